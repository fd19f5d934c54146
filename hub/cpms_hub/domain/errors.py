"""The one error hierarchy of CPMS.

Every error raised on purpose by CPMS code derives from :class:`CpmsError`.
The hierarchy is flat: each subclass names one kind of failure, and the
service maps each kind to one HTTP status. Messages never contain patient
data, tokens, passwords or key material; they name the field and the reason.
"""

from __future__ import annotations

__all__ = [
    "CpmsError",
    "ValidationError",
    "NotFoundError",
    "PermissionDeniedError",
    "ConflictError",
    "IntegrityError",
    "KeyUnavailableError",
    "ConfigurationError",
    "AuthenticationError",
    "NotAcceptableError",
]


class CpmsError(Exception):
    """Base class of every CPMS error."""

    #: reasons a caller may show; never patient data
    reasons: tuple[str, ...] = ()

    def __init__(self, message: str, *, reasons: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons) or (message,)


class ValidationError(CpmsError):
    """Input is malformed; ``field`` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    @classmethod
    def of(cls, problems: list[str] | tuple[str, ...]) -> ValidationError:
        """One error listing every ``"field: reason"`` problem found."""
        first_field, _, first_reason = problems[0].partition(": ")
        err = cls(first_field, first_reason)
        err.reasons = tuple(problems)
        return err


class NotFoundError(CpmsError):
    """The thing asked for does not exist (or is not visible to the caller)."""


class PermissionDeniedError(CpmsError):
    """The caller is known but not allowed; ``reasons`` say why."""


class ConflictError(CpmsError):
    """The request is well formed but clashes with the current state."""


class IntegrityError(CpmsError):
    """Tampered or unauthentic data was detected (ciphertext, blob or audit entry)."""


class KeyUnavailableError(CpmsError):
    """The key needed is missing or has been destroyed (e.g. an erased case)."""


class ConfigurationError(CpmsError):
    """The deployment is misconfigured (missing key file, bad permissions, …)."""


class AuthenticationError(CpmsError):
    """The caller could not be identified, or the credentials were refused."""


class NotAcceptableError(CpmsError):
    """None of the representations the caller accepts can be produced (HTTP Accept)."""
