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

__all__ = ["AccountStatus", "Account", "AccountRequest", "USERNAME_PATTERN", "validate_username"]

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

    @property
    def is_active(self) -> bool:
        return self.status is AccountStatus.ACTIVE
