"""The account registry: the only code that reads or writes ``AccountRow``.

Every public method is one transaction (:func:`session_scope`), and every
change, refusal and login writes an audit entry in that same transaction, so
the trail never records a change that was rolled back. Audit details name the
reason for a refusal (for the helpdesk and auditors) but never a password, a
one-time code or a TOTP secret. What the *caller* learns is deliberately
less: :meth:`AccountRegistry.authenticate` returns ``None`` for every kind of
refusal, and :meth:`AccountRegistry.begin_enrolment` raises one generic
:class:`AuthenticationError`.

Login rules (the design's mandatory multi-factor authentication):

* password (Argon2id, see :mod:`.passwords`) **and** a TOTP code (see
  :mod:`.totp`) are both required; a code is accepted only for a time step
  after the last accepted one, so a code cannot be replayed;
* an unknown user name still costs one Argon2 verification, so timing does
  not reveal which names exist;
* ``max_failures`` consecutive wrong passwords or codes lock the account for
  ``lockout_seconds``; while locked even correct credentials are refused, and
  refused attempts do not extend the lock (an attacker cannot keep a user
  locked out for ever by guessing every 14 minutes — only for as long as they
  keep guessing);
* enrolment is two-phase: :meth:`begin_enrolment` stores a *pending* secret,
  and the first login with a valid code for it confirms it. A secret the user
  never managed to load into an app therefore never becomes the one that
  guards the account.

TOTP secrets are sealed with the system accounts data key
(``SYSTEM_ACCOUNTS_KEY``), bound to (``accounts``, user name, field), so a
secret copied to another account's row does not decrypt.

Database timestamps are timezone-aware UTC; SQLite hands them back naive, and
naive values are read as UTC.
"""

from __future__ import annotations

import builtins
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from sqlalchemy import bindparam, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from cpms_hub.crypto import FieldCipher
from cpms_hub.domain.accounts import (
    USERNAME_PATTERN,
    Account,
    AccountRequest,
    AccountStatus,
    validate_expertise,
    validate_timezone,
)
from cpms_hub.domain.audit import AuditOutcome
from cpms_hub.domain.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from cpms_hub.domain.roles import Role
from cpms_hub.store.audit import AuditTrail
from cpms_hub.store.database import session_scope
from cpms_hub.store.keys import SYSTEM_ACCOUNTS_KEY, DataKeys
from cpms_hub.store.schema import AccountRow
from cpms_hub.store.sqlite_reads import read_statements

from . import totp
from .passwords import PasswordHashing, check_password_policy

__all__ = ["AccountRegistry", "ACCOUNTS_TABLE", "REQUESTABLE_ROLES"]

#: roles anyone may ask for; helpdesk and auditor are granted by an administrator only
REQUESTABLE_ROLES: frozenset[Role] = frozenset(
    {Role.CLINICIAN, Role.PANEL_MEMBER, Role.COORDINATOR, Role.DATA_SCIENTIST}
)
#: the ``table`` bound into the associated data of encrypted account fields
ACCOUNTS_TABLE = "accounts"
_SECRET_FIELD = "totp_secret"  # noqa: S105 -- a column name
_PENDING_FIELD = "totp_pending"
#: audit actor for a login attempt whose user name is not even well formed
_INVALID_ACTOR = "-invalid-"
#: audit actor of the demo/test code reader
_SYSTEM_ACTOR = "system"


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _to_account(row: AccountRow) -> Account:
    roles = frozenset(Role(r) for r in row.roles.split(",") if r)
    return Account(
        name=row.name,
        email=row.email,
        full_name=row.full_name,
        hospital=row.hospital,
        network=row.network,
        roles=roles,
        status=AccountStatus(row.status),
        mfa_enrolled=row.totp_secret_enc is not None,
        created_at=_aware(row.created_at),
        locked_until=_aware(row.locked_until) if row.locked_until else None,
        expertise=tuple(e for e in (row.expertise or "").split("\n") if e),
        timezone=row.timezone or "UTC",
    )


#: what :func:`_to_account` reads, never the password hash or the pending secret
_GET = select(
    *(
        AccountRow.__table__.c[c]
        for c in (
            "name",
            "email",
            "full_name",
            "hospital",
            "network",
            "roles",
            "status",
            "totp_secret_enc",
            "created_at",
            "locked_until",
            "expertise",
            "timezone",
        )
    )
).where(AccountRow.__table__.c.name == bindparam("name"))


def _roles_column(roles: frozenset[Role]) -> str:
    # sorted so the column is stable and comparable across writes
    return ",".join(sorted(r.value for r in roles))


class AccountRegistry:
    """Requests, decisions, enrolment and login of staff accounts."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        data_keys: DataKeys,
        audit: AuditTrail,
        *,
        max_failures: int = 5,
        lockout_seconds: float = 900,
        password_hasher: PasswordHasher | None = None,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if lockout_seconds < 0:
            raise ValueError("lockout_seconds must not be negative")
        self._sessions = session_factory
        self._keys = data_keys
        self._audit = audit
        self.max_failures = max_failures
        self.lockout = timedelta(seconds=lockout_seconds)
        self.passwords = PasswordHashing(password_hasher)

    # -- requests and decisions ------------------------------------------------------------

    def request(self, req: AccountRequest, password: str, *, client: str = "") -> Account:
        """Record a request for an account (status ``requested``)."""
        privileged = req.roles - REQUESTABLE_ROLES
        if privileged:
            names = ", ".join(sorted(r.value for r in privileged))
            raise ValidationError("roles", f"cannot be requested: {names}")
        check_password_policy(password, username=req.name)
        password_hash = self.passwords.hash(password)
        with session_scope(self._sessions) as s:
            row = self._insert(s, req, password_hash, AccountStatus.REQUESTED)
            self._audit.append(
                s,
                actor=req.name,
                action="account.request",
                outcome=AuditOutcome.ALLOWED,
                client=client,
                detail=f"roles={row.roles}",
            )
            return _to_account(row)

    def create_active(
        self,
        req: AccountRequest,
        password: str,
        *,
        by: str,
        totp_secret: str | None = None,
        expertise: tuple[str, ...] | list[str] = (),
        timezone: str = "UTC",
    ) -> Account:
        """Create an approved account at once (``cpms-admin`` seeding demo/test users).

        With ``totp_secret`` the account is enrolled already; without, its owner
        enrols at first login like everyone else.
        """
        expertise = validate_expertise(list(expertise))
        timezone = validate_timezone(timezone)
        check_password_policy(password, username=req.name)
        if totp_secret is not None:
            try:
                totp.current_code(totp_secret)
            except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
                raise ValidationError("totp_secret", "is not a base32 secret") from exc
        password_hash = self.passwords.hash(password)
        with session_scope(self._sessions) as s:
            row = self._insert(s, req, password_hash, AccountStatus.ACTIVE)
            row.decided_by = by
            row.decided_at = _now()
            row.expertise = "\n".join(expertise)
            row.timezone = timezone
            if totp_secret is not None:
                row.totp_secret_enc = self._encrypt(s, req.name, _SECRET_FIELD, totp_secret)
            self._audit.append(
                s,
                actor=by,
                action="account.create",
                outcome=AuditOutcome.ALLOWED,
                detail=f"account={req.name} roles={row.roles} "
                f"enrolled={'yes' if totp_secret else 'no'}",
            )
            return _to_account(row)

    def approve(self, name: str, *, by: str) -> Account:
        return self._decide(name, by=by, status=AccountStatus.ACTIVE, action="account.approve")

    def reject(self, name: str, *, by: str) -> Account:
        return self._decide(name, by=by, status=AccountStatus.REJECTED, action="account.reject")

    def disable(self, name: str, *, by: str) -> Account:
        with session_scope(self._sessions) as s:
            row = self._row(s, name)
            if row.status != AccountStatus.ACTIVE:
                raise ConflictError(f"account {name} is {row.status}, not active")
            row.status = AccountStatus.DISABLED.value
            self._audit.append(
                s,
                actor=by,
                action="account.disable",
                outcome=AuditOutcome.ALLOWED,
                detail=f"account={name}",
            )
            return _to_account(row)

    def enable(self, name: str, *, by: str) -> Account:
        with session_scope(self._sessions) as s:
            row = self._row(s, name)
            if row.status != AccountStatus.DISABLED:
                raise ConflictError(f"account {name} is {row.status}, not disabled")
            row.status = AccountStatus.ACTIVE.value
            # re-enabling is a fresh start: failures from before the suspension do not count
            row.failed_logins = 0
            row.locked_until = None
            self._audit.append(
                s,
                actor=by,
                action="account.enable",
                outcome=AuditOutcome.ALLOWED,
                detail=f"account={name}",
            )
            return _to_account(row)

    def reset_mfa(self, name: str, *, by: str) -> Account:
        """Forget the account's TOTP secrets; its owner must enrol again."""
        with session_scope(self._sessions) as s:
            row = self._row(s, name)
            row.totp_secret_enc = None
            row.totp_pending_enc = None
            row.totp_last_step = 0
            self._audit.append(
                s,
                actor=by,
                action="account.reset-mfa",
                outcome=AuditOutcome.ALLOWED,
                detail=f"account={name}",
            )
            return _to_account(row)

    def set_password(self, name: str, password: str, *, by: str) -> None:
        check_password_policy(password, username=name)
        password_hash = self.passwords.hash(password)
        with session_scope(self._sessions) as s:
            row = self._row(s, name)
            row.password_hash = password_hash
            row.failed_logins = 0
            row.locked_until = None
            self._audit.append(
                s,
                actor=by,
                action="account.set-password",
                outcome=AuditOutcome.ALLOWED,
                detail=f"account={name}",
            )

    # -- reading ---------------------------------------------------------------------------

    def set_profile(
        self,
        name: str,
        *,
        by: str,
        expertise: tuple[str, ...] | list[str] | None = None,
        timezone: str | None = None,
    ) -> Account:
        """Set what an account is expert in and its time zone (helpdesk, ``cpms-admin``)."""
        items = validate_expertise(expertise) if expertise is not None else None
        zone = validate_timezone(timezone) if timezone is not None else None
        with session_scope(self._sessions) as s:
            row = self._row(s, name)
            if items is not None:
                row.expertise = "\n".join(items)
            if zone is not None:
                row.timezone = zone
            self._audit.append(
                s,
                actor=by,
                action="account.profile",
                outcome=AuditOutcome.ALLOWED,
                detail=f"account={name} expertise={len(items) if items is not None else '-'}",
            )
            return _to_account(row)

    def verify_step_up(self, name: str, code: str | None, *, client: str = "") -> None:
        """Check ``name``'s current TOTP code before a sensitive act (signing an outcome).

        The code is consumed like a login code (never accepted twice) and a wrong one
        counts towards the lock-out, so a stolen API token alone cannot sign and the six
        digits cannot be guessed. Raises :class:`PermissionDeniedError` with the reason.
        """
        with session_scope(self._sessions) as s:
            row = self._row(s, name)
            reason = None
            if row.locked_until is not None and _aware(row.locked_until) > _now():
                reason = "the account is locked after too many wrong codes: try again later"
            elif row.totp_secret_enc is None:
                reason = "no authenticator is enrolled for this account"
            else:
                secret = self._decrypt(s, name, _SECRET_FIELD, row.totp_secret_enc)
                step = totp.verify(secret, code, row.totp_last_step or 0)
                if step is None:
                    replayed = totp.verify(secret, code, -1) is not None
                    self._count_failure(s, row, client)
                    reason = (
                        "the authenticator code was already used: wait for the next one"
                        if replayed
                        else "the authenticator code is wrong"
                    )
                else:
                    row.totp_last_step = step
                    row.failed_logins = 0
            self._audit.append(
                s,
                actor=name,
                action="account.step-up",
                outcome=AuditOutcome.DENIED if reason else AuditOutcome.ALLOWED,
                client=client,
                detail=reason or "",
            )
        if reason:
            raise PermissionDeniedError("step-up refused", reasons=(f"totp: {reason}",))

    def get(self, name: str) -> Account:
        """The account ``name`` as stored now (the service reads it on every request)."""
        row = None
        if _well_formed(name):
            # one statement: on a SQLite file straight through the driver in autocommit
            # (its own snapshot, so a disable committed elsewhere is seen at once), else
            # a Core read-only connection; never a Session or the write lock
            with read_statements(self._sessions) as source:
                row = source.execute(_GET, {"name": name}).one_or_none()
        if row is None:
            raise NotFoundError(f"no account {name!r}" if _well_formed(name) else "no such account")
        return _to_account(row)

    def list(self) -> builtins.list[Account]:
        with session_scope(self._sessions, write=False) as s:
            rows = s.scalars(select(AccountRow).order_by(AccountRow.name))
            return [_to_account(r) for r in rows]

    def is_active(self, name: str) -> bool:
        """Whether ``name`` may use CPMS now (checked on every request, so one column)."""
        if not isinstance(name, str) or not USERNAME_PATTERN.match(name):
            return False
        with session_scope(self._sessions, write=False) as s:
            status = s.scalar(select(AccountRow.status).where(AccountRow.name == name))
        return status == AccountStatus.ACTIVE

    def current_code(self, name: str) -> str:
        """The TOTP code valid now for ``name`` (demo and test commands only)."""
        with session_scope(self._sessions) as s:
            row = self._row(s, name)
            if row.totp_secret_enc is not None:
                secret = self._decrypt(s, name, _SECRET_FIELD, row.totp_secret_enc)
            elif row.totp_pending_enc is not None:
                secret = self._decrypt(s, name, _PENDING_FIELD, row.totp_pending_enc)
            else:
                raise ConflictError(f"account {name} has no TOTP secret")
            self._audit.append(
                s,
                actor=_SYSTEM_ACTOR,
                action="account.read-code",
                outcome=AuditOutcome.ALLOWED,
                detail=f"account={name}",
            )
        return totp.current_code(secret)

    # -- enrolment and login ---------------------------------------------------------------

    def begin_enrolment(self, name: str, password: str, *, client: str = "") -> str:
        """Start TOTP enrolment; returns the ``otpauth://`` provisioning URI.

        Needs the account's password, an active account and no confirmed
        secret. Any refusal raises the same :class:`AuthenticationError`; a
        wrong password counts towards the lockout.
        """
        uri: str | None = None
        with session_scope(self._sessions) as s:
            row = self._lookup(s, name)
            reason = self._precheck(row, password)
            if reason is None and row is not None:
                if not self.passwords.verify(row.password_hash, password):
                    reason = "bad-password"
                    self._count_failure(s, row, client)
                elif row.totp_secret_enc is not None:
                    reason = "already-enrolled"
            if reason is None and row is not None:
                secret = totp.new_secret()
                # a fresh pending secret replaces an unconfirmed one (a lost QR code)
                row.totp_pending_enc = self._encrypt(s, row.name, _PENDING_FIELD, secret)
                uri = totp.provisioning_uri(secret, row.name)
            self._audit.append(
                s,
                actor=self._actor(name),
                action="account.enrol-begin",
                outcome=AuditOutcome.ALLOWED if uri else AuditOutcome.DENIED,
                client=client,
                detail="" if uri else f"reason={reason}",
            )
        if uri is None:
            raise AuthenticationError("enrolment refused: check the user name and password")
        return uri

    def authenticate(
        self, name: str, password: str, code: str | None, *, client: str = ""
    ) -> Account | None:
        """The account if ``password`` and ``code`` are right and it may log in, else None."""
        with session_scope(self._sessions) as s:
            row = self._lookup(s, name)
            reason = self._precheck(row, password)
            account: Account | None = None
            if reason is None and row is not None:
                reason = self._check_factors(s, row, password, code, client)
                if reason is None:
                    account = _to_account(row)
            self._audit.append(
                s,
                actor=self._actor(name),
                action="account.login",
                outcome=AuditOutcome.ALLOWED if account else AuditOutcome.DENIED,
                client=client,
                detail="" if account else f"reason={reason}",
            )
            return account

    # -- internals -------------------------------------------------------------------------

    def _decide(self, name: str, *, by: str, status: AccountStatus, action: str) -> Account:
        with session_scope(self._sessions) as s:
            row = self._row(s, name)
            if row.status != AccountStatus.REQUESTED:
                raise ConflictError(f"account {name} is {row.status}, not requested")
            row.status = status.value
            row.decided_by = by
            row.decided_at = _now()
            self._audit.append(
                s,
                actor=by,
                action=action,
                outcome=AuditOutcome.ALLOWED,
                detail=f"account={name}",
            )
            return _to_account(row)

    def _insert(
        self, s: Session, req: AccountRequest, password_hash: str, status: AccountStatus
    ) -> AccountRow:
        if s.get(AccountRow, req.name) is not None:
            raise ConflictError(f"account {req.name} already exists")
        row = AccountRow(
            name=req.name,
            email=req.email,
            full_name=req.full_name.strip(),
            hospital=req.hospital.strip(),
            network=req.network.strip(),
            roles=_roles_column(req.roles),
            status=status.value,
            password_hash=password_hash,
            totp_last_step=0,
            failed_logins=0,
            created_at=_now(),
        )
        s.add(row)
        try:
            # flush now so a concurrent insert of the same name fails here, as a conflict
            s.flush()
        except sa_exc.IntegrityError:
            raise ConflictError(f"account {req.name} already exists") from None
        return row

    def _row(self, s: Session, name: str) -> AccountRow:
        row = self._lookup(s, name)
        if row is None:
            raise NotFoundError(f"no account {name!r}" if _well_formed(name) else "no such account")
        return row

    @staticmethod
    def _lookup(s: Session, name: str) -> AccountRow | None:
        if not _well_formed(name):
            return None
        return s.get(AccountRow, name)

    @staticmethod
    def _actor(name: str) -> str:
        # a password typed into the user-name field must not end up in the audit trail
        return name if _well_formed(name) else _INVALID_ACTOR

    def _precheck(self, row: AccountRow | None, password: str) -> str | None:
        """Refusals decided before the password is checked (each still costs one hash)."""
        if row is None:
            self.passwords.spend(password)
            return "unknown-user"
        if row.locked_until is not None and _aware(row.locked_until) > _now():
            self.passwords.spend(password)
            return "locked"
        if row.status != AccountStatus.ACTIVE:
            self.passwords.spend(password)
            return "not-active"
        return None

    def _check_factors(
        self, s: Session, row: AccountRow, password: str, code: str | None, client: str
    ) -> str | None:
        if not self.passwords.verify(row.password_hash, password):
            self._count_failure(s, row, client)
            return "bad-password"
        if row.totp_secret_enc is not None:
            field, blob, confirming = _SECRET_FIELD, row.totp_secret_enc, False
        elif row.totp_pending_enc is not None:
            field, blob, confirming = _PENDING_FIELD, row.totp_pending_enc, True
        else:
            # the password was right, so this is no guess: not counted as a failure
            return "not-enrolled"
        secret = self._decrypt(s, row.name, field, blob)
        step = totp.verify(secret, code, row.totp_last_step or 0)
        if step is None:
            replayed = totp.verify(secret, code, -1) is not None
            self._count_failure(s, row, client)
            return "code-reused" if replayed else "bad-code"
        if confirming:
            row.totp_secret_enc = self._encrypt(s, row.name, _SECRET_FIELD, secret)
            row.totp_pending_enc = None
            self._audit.append(
                s,
                actor=row.name,
                action="account.enrol-confirm",
                outcome=AuditOutcome.ALLOWED,
                client=client,
            )
        row.totp_last_step = step
        row.failed_logins = 0
        row.locked_until = None
        if self.passwords.needs_rehash(row.password_hash or ""):
            row.password_hash = self.passwords.hash(password)
        return None

    def _count_failure(self, s: Session, row: AccountRow, client: str) -> None:
        row.failed_logins = (row.failed_logins or 0) + 1
        if row.failed_logins >= self.max_failures:
            row.locked_until = _now() + self.lockout
            # the lock is the consequence; once it expires the user gets a full set of tries
            row.failed_logins = 0
            self._audit.append(
                s,
                actor=row.name,
                action="account.lock",
                outcome=AuditOutcome.DENIED,
                client=client,
                detail=f"seconds={int(self.lockout.total_seconds())}",
            )

    def _cipher(self, s: Session) -> FieldCipher:
        return FieldCipher(self._keys.get_or_create(s, SYSTEM_ACCOUNTS_KEY))

    def _encrypt(self, s: Session, name: str, field: str, secret: str) -> bytes:
        return self._cipher(s).encrypt_text(secret, table=ACCOUNTS_TABLE, row_id=name, field=field)

    def _decrypt(self, s: Session, name: str, field: str, blob: bytes) -> str:
        return self._keys.cipher(s, SYSTEM_ACCOUNTS_KEY).decrypt_text(
            blob, table=ACCOUNTS_TABLE, row_id=name, field=field
        )


def _well_formed(name: object) -> bool:
    return isinstance(name, str) and USERNAME_PATTERN.match(name) is not None
