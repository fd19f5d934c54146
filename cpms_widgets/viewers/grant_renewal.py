"""Renewing a viewer's image grant before it expires, on a timer thread.

Image grants are short-lived (DESIGN.md: a few minutes), and a viewer may stay
open for an hour. Each viewer asks for a new grant ``RENEW_BEFORE`` seconds
before the current one expires; when the store does not answer (it may be
restarting), it tries again every ``RETRY_DELAY`` seconds instead of giving up,
so a reader coming back to a viewer finds it still working. Closing the viewer
stops the timer for good, including a renewal that is running at that moment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["GrantRenewal", "MIN_RENEW_DELAY", "RENEW_BEFORE", "RETRY_DELAY"]

#: renew a grant this many seconds before it expires
RENEW_BEFORE = 60.0
#: and never sooner than this after the previous one (a very short grant lifetime)
MIN_RENEW_DELAY = 5.0
#: after a failed renewal, try again this much later
RETRY_DELAY = MIN_RENEW_DELAY * 6


class GrantRenewal:
    """Calls ``renew`` shortly before each grant expires; ``renew`` calls :meth:`schedule`."""

    def __init__(self, renew: Callable[[], object], *, enabled: bool = True) -> None:
        self._renew_now = renew
        self.enabled = enabled
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._closed = False

    def schedule(self, expires_at: str) -> None:
        """Plan the next renewal for a grant that expires at ``expires_at`` (ISO 8601)."""
        if not self.enabled:
            return
        expires = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        left = (expires - datetime.now(UTC)).total_seconds()
        self._start(max(MIN_RENEW_DELAY, left - RENEW_BEFORE))

    def close(self) -> None:
        """No renewal after this one."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _start(self, delay: float) -> None:
        with self._lock:
            if self._closed:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(delay, self._run)
            self._timer.daemon = True
            self._timer.start()

    def _run(self) -> None:
        if self._closed:
            return
        try:
            self._renew_now()
        except Exception:  # noqa: BLE001 - keep trying: the store may be restarting
            self._start(RETRY_DELAY)
