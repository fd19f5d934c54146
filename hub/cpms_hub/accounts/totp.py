"""Time-based one-time passwords (RFC 6238) for the second login factor.

Codes are the authenticator-app default: HMAC-SHA1, 6 digits, 30-second
steps. A code is accepted for the current step and one step either side
(``VALID_WINDOW``), which tolerates clock drift and a code typed just as it
rolls over.

:func:`verify` returns the *time step* the code matched rather than a bool.
The registry stores the last accepted step per account and passes it back in,
and only steps after it are accepted: a code, once used, cannot be replayed
(RFC 6238 section 5.2), not even within its own 90-second window.

Secrets are 160-bit (32 base32 characters, RFC 4226's recommended length).
This module never stores anything; encryption at rest is the registry's job.
"""

from __future__ import annotations

import hmac
import time

import pyotp

__all__ = [
    "ISSUER",
    "DIGITS",
    "INTERVAL",
    "VALID_WINDOW",
    "new_secret",
    "provisioning_uri",
    "current_step",
    "current_code",
    "verify",
]

ISSUER = "CPMS"
DIGITS = 6
INTERVAL = 30
VALID_WINDOW = 1


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)


def new_secret() -> str:
    """A fresh random base32 secret (160 bits)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, name: str) -> str:
    """The ``otpauth://totp/CPMS:<name>?secret=…&issuer=CPMS`` URI for QR codes and apps."""
    return _totp(secret).provisioning_uri(name=name, issuer_name=ISSUER)


def current_step(for_time: float | None = None) -> int:
    return int((time.time() if for_time is None else for_time) // INTERVAL)


def current_code(secret: str, *, for_time: float | None = None) -> str:
    """The code an authenticator app shows now (demo and tests only)."""
    return _totp(secret).generate_otp(current_step(for_time))


def verify(
    secret: str, code: str | None, last_step: int = 0, *, for_time: float | None = None
) -> int | None:
    """The time step ``code`` is valid for, or None.

    Only steps within ``VALID_WINDOW`` of now and strictly after ``last_step``
    count, so a code accepted once is refused from then on.
    """
    if not code:
        return None
    # apps and people group digits ("123 456"); nothing else is tolerated
    code = code.replace(" ", "").strip()
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = _totp(secret)
    now = current_step(for_time)
    accepted: int | None = None
    # check every candidate step, not just until the first match, to keep timing flat
    for step in range(now - VALID_WINDOW, now + VALID_WINDOW + 1):
        expected = totp.generate_otp(step)
        if hmac.compare_digest(expected, code) and step > last_step and accepted is None:
            accepted = step
    return accepted
