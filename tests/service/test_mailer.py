"""The background mail sender against a real SMTP server (aiosmtpd) on loopback.

E-mails wait in the outbox until the sender delivers them; a server that is down
makes them wait and retry, never lost and never blocking a request.
"""

from __future__ import annotations

import email
import email.policy
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from cpms_hub.service.mailer import Mailer
from cpms_hub.settings import CpmsSettings
from cpms_hub.state import init_state
from tests.deployment import free_port
from tests.store.review_world import make_world


class Inbox:
    def __init__(self) -> None:
        self.received: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        self.received.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


@pytest.fixture
def state(tmp_path: Path):  # noqa: ANN201
    settings = CpmsSettings(
        state_dir=str(tmp_path),
        db_url=f"sqlite:///{tmp_path / 'cpms.sqlite'}",
        key_file=str(tmp_path / "keys" / "keyring.json"),
        blob_dir=str(tmp_path / "blobs"),
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_sender="cpms@example.org",
        smtp_timeout=2,
    )
    st = init_state(settings)
    st.review.mail_enabled = True
    yield st
    st.close()


def test_invitations_are_delivered_with_a_link_only(state) -> None:  # noqa: ANN001
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=state.settings.smtp_port)
    controller.start()
    try:
        world = make_world(state)
        world.assemble()
        mailer = Mailer(state.review, state.settings)
        assert mailer.send_pending() == 2
        assert mailer.send_pending() == 0  # delivered once
    finally:
        controller.stop()
    assert sorted(m["To"] for m in inbox.received) == ["expert@example.org", "lead@example.org"]
    for m in inbox.received:
        body = m.get_content()
        assert m["From"] == "cpms@example.org"
        assert f"?case={world.case_id}" in body
        assert "Review case" not in body and "a summary" not in body


def test_a_server_that_is_down_delays_and_retries(state) -> None:  # noqa: ANN001
    world = make_world(state)
    started = time.monotonic()
    world.assemble()  # the request does not wait on mail
    assert time.monotonic() - started < 2
    mailer = Mailer(state.review, state.settings)
    assert mailer.send_pending() == 0  # nothing listens on the port
    assert state.review.pending_mail() == []  # both wait for their retry time
