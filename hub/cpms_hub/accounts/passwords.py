"""Password hashing (Argon2id) and the password policy of CPMS accounts.

Hashes are Argon2id (RFC 9106) PHC strings made by argon2-cffi's
:class:`~argon2.PasswordHasher`; the production parameters are the RFC 9106
"low memory" profile (t=3, m=64 MiB, p=4). Because the parameters are part of
every stored hash, raising them later needs no migration: a login that
succeeds against an old hash re-hashes the password (:meth:`PasswordHashing.
needs_rehash`).

:class:`PasswordHashing` also keeps a dummy hash made with the same
parameters. Verifying against it when the account does not exist (or may not
log in) costs as much as a real verification, so response time does not tell
an attacker which user names exist.

The policy is deliberately small (NIST SP 800-63B: length over composition
rules): at least 12 characters, at most 1024 (so nobody can make the hub hash
megabytes), and not the user name itself.
"""

from __future__ import annotations

import secrets
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

from cpms_hub.domain.errors import ValidationError

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "MAX_PASSWORD_LENGTH",
    "PasswordHashing",
    "check_password_policy",
    "default_hasher",
]

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


def default_hasher() -> PasswordHasher:
    """The production hasher: Argon2id with the RFC 9106 low-memory profile."""
    return PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)


def check_password_policy(password: str, *, username: str) -> None:
    """Raise ``ValidationError("password", reason)`` unless ``password`` is acceptable."""
    if not isinstance(password, str) or not password:
        raise ValidationError("password", "is required")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError("password", f"must be at most {MAX_PASSWORD_LENGTH} characters")
    # case and surrounding blanks do not make a user name any harder to guess
    if password.strip().casefold() == (username or "").strip().casefold():
        raise ValidationError("password", "must not be the user name")


class PasswordHashing:
    """Hash, verify and re-hash passwords with one :class:`PasswordHasher`."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or default_hasher()
        self._dummy: str | None = None
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True if ``password`` matches ``stored_hash``.

        With no stored hash the password is checked against the dummy hash, so
        the call takes as long as a real one and still returns False.
        """
        if not stored_hash:
            self._burn(password)
            return False
        try:
            return self.hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def spend(self, password: str) -> None:
        """Spend one verification's worth of time without checking anything."""
        self._burn(password)

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True

    def _burn(self, password: str) -> None:
        try:
            self.hasher.verify(self._dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            pass

    def _dummy_hash(self) -> str:
        # made lazily so constructing a registry (e.g. in cpms-admin) costs nothing
        with self._lock:
            if self._dummy is None:
                self._dummy = self.hasher.hash(secrets.token_urlsafe(24))
            return self._dummy
