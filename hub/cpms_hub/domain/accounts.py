"""Accounts of the people who use CPMS (staff, not patients).

An account is requested (name, e-mail, hospital, network, roles), approved or
rejected by the helpdesk, and becomes usable only after its owner enrols a
TOTP authenticator (RFC 6238): multi-factor authentication is mandatory on
every login path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from .errors import ValidationError
from .roles import Role

__all__ = [
    "AccountStatus",
    "Account",
    "AccountRequest",
    "USERNAME_PATTERN",
    "validate_username",
    "validate_expertise",
    "validate_timezone",
    "MAX_EXPERTISE",
]

#: most expertise entries per account, each at most 100 characters
MAX_EXPERTISE = 50

#: JupyterHub user names double as system account names under system-user
#: isolation, so keep them to what ``useradd`` accepts.
USERNAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
_EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def validate_username(name: str) -> str:
    if not isinstance(name, str) or not USERNAME_PATTERN.match(name):
        raise ValidationError(
            "name",
            "must be 2-31 characters: lower-case letters, digits, '-', starting with a letter",
        )
    return name


def validate_expertise(items: object) -> tuple[str, ...]:
    """Expertise entries, stripped and de-duplicated (ORPHA codes, specialties)."""
    if isinstance(items, str) or not isinstance(items, (list, tuple)):
        raise ValidationError("expertise", "must be a list of texts")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip() or len(item) > 100 or "\n" in item:
            raise ValidationError("expertise", "each entry must be 1-100 characters on one line")
        if item.strip() not in out:
            out.append(item.strip())
    if len(out) > MAX_EXPERTISE:
        raise ValidationError("expertise", f"at most {MAX_EXPERTISE} entries")
    return tuple(out)


def validate_timezone(name: object) -> str:
    """An IANA time zone name such as ``Europe/Paris``."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    problem = ValidationError("timezone", "must be an IANA time zone such as Europe/Paris")
    if not isinstance(name, str) or not name or len(name) > 64:
        raise problem
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise problem from None
    return name


class AccountStatus(StrEnum):
    REQUESTED = "requested"
    ACTIVE = "active"
    REJECTED = "rejected"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class AccountRequest:
    """What a person asks for when requesting an account."""

    name: str
    email: str
    full_name: str
    hospital: str
    network: str
    roles: frozenset[Role]

    def __post_init__(self) -> None:
        validate_username(self.name)
        if not _EMAIL_PATTERN.match(self.email or ""):
            raise ValidationError("email", "is not an e-mail address")
        for field in ("full_name", "hospital", "network"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip() or len(value) > 200:
                raise ValidationError(field, "must be 1-200 characters")
        if not self.roles:
            raise ValidationError("roles", "at least one role is required")
        for role in self.roles:
            if not isinstance(role, Role):
                raise ValidationError("roles", f"unknown role {role!r}")


@dataclass(frozen=True, slots=True)
class Account:
    """An account as the rest of CPMS sees it (no secrets)."""

    name: str
    email: str
    full_name: str
    hospital: str
    network: str
    roles: frozenset[Role]
    status: AccountStatus
    mfa_enrolled: bool
    created_at: datetime
    locked_until: datetime | None = None
    #: what the person is expert in (ORPHA codes such as ``ORPHA:558``, specialties)
    expertise: tuple[str, ...] = ()
    #: IANA time zone (meeting times are shown in it)
    timezone: str = "UTC"

    @property
    def is_active(self) -> bool:
        return self.status is AccountStatus.ACTIVE
