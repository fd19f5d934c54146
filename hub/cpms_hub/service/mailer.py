"""The background sender of notification e-mails (the outbox's other half).

The store writes e-mails into ``mail_outbox`` in the same transaction as the
change they announce (:mod:`cpms_hub.store.review`); this thread delivers them
through the configured SMTP server (``CPMS_SMTP_*``) with a timeout, so no
request ever waits on mail, and a failed delivery is retried later with a
growing delay. On the same beat it sends deadline reminders and expires
unanswered invitations (the invitee then loses access to the case). Logs name the
outbox entry and the error class only: never an address, never a body.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from email.message import EmailMessage
from pathlib import Path

from cpms_hub.settings import CpmsSettings
from cpms_hub.store.review import MailItem, ReviewStore

__all__ = ["Mailer"]

log = logging.getLogger("cpms.mail")


class Mailer:
    """Delivers the outbox every ``settings.mail_interval`` seconds until stopped."""

    def __init__(self, review: ReviewStore, settings: CpmsSettings) -> None:
        self.review = review
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Mailer:
        self._thread = threading.Thread(target=self._run, name="cpms-mailer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.review.expire_invitations()
                self.review.remind_deadlines()
                self.send_pending()
            except Exception:  # noqa: BLE001 - the sender must outlive any one failure
                log.exception("mail pass failed")
            self._stop.wait(max(1, self.settings.mail_interval))

    def send_pending(self) -> int:
        """One pass over the outbox; the number of e-mails delivered."""
        if not self.settings.smtp_host:
            return 0
        items = self.review.pending_mail()
        if not items:
            return 0
        sent = 0
        try:
            with self._connect() as smtp:
                for item in items:
                    try:
                        smtp.send_message(self._message(item))
                    except smtplib.SMTPException as exc:
                        self._failed(item, exc)
                        continue
                    self.review.mail_done(item.id)
                    sent += 1
        except (OSError, smtplib.SMTPException) as exc:
            for item in items[sent:]:
                self._failed(item, exc)
        return sent

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
        if s.smtp_starttls == "1":
            smtp.starttls()
        if s.smtp_user:
            password = (
                Path(s.smtp_password_file).read_text().strip() if s.smtp_password_file else ""
            )
            smtp.login(s.smtp_user, password)
        return smtp

    def _message(self, item: MailItem) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_sender
        msg["To"] = item.to_addr
        msg["Subject"] = item.subject
        msg.set_content(item.body)
        return msg

    def _failed(self, item: MailItem, exc: BaseException) -> None:
        log.warning("mail %s not delivered (%s); will retry", item.id, type(exc).__name__)
        self.review.mail_done(item.id, error=type(exc).__name__)
