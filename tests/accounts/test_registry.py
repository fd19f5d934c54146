"""AccountRegistry against a real SQLite database and a real keyring.

Nothing is mocked: each test gets a fresh migrated database file and key file
in ``tmp_path``. Argon2 runs with cheap parameters so the suite stays fast;
TOTP codes are computed with pyotp from the secret the registry hands out,
as an authenticator app would.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text

from cpms_hub.accounts import AccountRegistry
from cpms_hub.crypto import Keyring
from cpms_hub.domain import (
    AccountRequest,
    AccountStatus,
    AuthenticationError,
    ConflictError,
    IntegrityError,
    NotFoundError,
    Role,
    ValidationError,
)
from cpms_hub.store.audit import AuditTrail, verify_chain
from cpms_hub.store.database import make_engine, make_session_factory, migrate, session_scope
from cpms_hub.store.keys import DataKeys
from cpms_hub.store.schema import AccountRow, AuditRow

PASSWORD = "correct horse battery staple"
CHEAP = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}


class CountingHasher(PasswordHasher):
    """A cheap hasher that counts verifications (to check timing is spent)."""

    def __init__(self, **params: int) -> None:
        super().__init__(**{**CHEAP, **params})
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
        self.verifications += 1
        return super().verify(hash, password)


class Env:
    """One database + keyring, and registries over it."""

    def __init__(self, tmp_path: Path) -> None:
        self.db_path = tmp_path / "t.sqlite"
        self.engine = make_engine(f"sqlite:///{self.db_path}")
        migrate(self.engine)
        self.sessions = make_session_factory(self.engine)
        self.keys = DataKeys(Keyring.generate(tmp_path / "k.json"))
        self.hasher = CountingHasher()

    def registry(self, **kwargs: object) -> AccountRegistry:
        kwargs.setdefault("password_hasher", self.hasher)
        return AccountRegistry(self.sessions, self.keys, AuditTrail(), **kwargs)  # type: ignore[arg-type]

    def raw_bytes(self) -> bytes:
        data = b""
        for suffix in ("", "-wal"):
            path = Path(f"{self.db_path}{suffix}")
            if path.exists():
                data += path.read_bytes()
        return data

    def audit(self, action: str | None = None) -> list[AuditRow]:
        with session_scope(self.sessions) as s:
            stmt = select(AuditRow).order_by(AuditRow.seq)
            if action:
                stmt = stmt.where(AuditRow.action == action)
            return list(s.scalars(stmt))

    def row(self, name: str) -> AccountRow:
        with session_scope(self.sessions) as s:
            row = s.get(AccountRow, name)
            assert row is not None
            return row


@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp_path)
    yield e
    e.engine.dispose()


@pytest.fixture
def reg(env: Env) -> AccountRegistry:
    return env.registry()


def request_for(name: str, *roles: Role) -> AccountRequest:
    return AccountRequest(
        name=name,
        email=f"{name}@hospital.example",
        full_name=f"Dr {name.title()}",
        hospital="St Elsewhere",
        network="ERN-X",
        roles=frozenset(roles or {Role.CLINICIAN}),
    )


def secret_of(uri: str) -> str:
    return parse_qs(urlsplit(uri).query)["secret"][0]


def code(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def wrong_code(secret: str) -> str:
    valid = {code(secret, k) for k in (-1, 0, 1, 2)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444") if c not in valid)


def enrolled(reg: AccountRegistry, name: str = "dr-alice") -> str:
    """request -> approve -> enrol -> first login; returns the confirmed secret."""
    reg.request(request_for(name), PASSWORD)
    reg.approve(name, by="helpdesk")
    secret = secret_of(reg.begin_enrolment(name, PASSWORD))
    assert reg.authenticate(name, PASSWORD, code(secret)) is not None
    return secret


# -- lifecycle -----------------------------------------------------------------------------


def test_request_approve_enrol_login(env: Env, reg: AccountRegistry) -> None:
    account = reg.request(request_for("dr-alice", Role.CLINICIAN, Role.PANEL_MEMBER), PASSWORD)
    assert account.status is AccountStatus.REQUESTED
    assert account.roles == {Role.CLINICIAN, Role.PANEL_MEMBER}
    assert account.created_at.tzinfo is not None
    assert not reg.is_active("dr-alice")
    # a requested account cannot log in or enrol
    with pytest.raises(AuthenticationError):
        reg.begin_enrolment("dr-alice", PASSWORD)

    approved = reg.approve("dr-alice", by="helpdesk")
    assert approved.status is AccountStatus.ACTIVE and not approved.mfa_enrolled
    assert reg.is_active("dr-alice")
    assert env.row("dr-alice").decided_by == "helpdesk"

    uri = reg.begin_enrolment("dr-alice", PASSWORD)
    assert uri.startswith("otpauth://totp/CPMS:dr-alice?")
    secret = secret_of(uri)
    assert reg.current_code("dr-alice") == code(secret)  # reads the pending secret
    assert not reg.get("dr-alice").mfa_enrolled  # pending until a code proves the app has it
    assert env.row("dr-alice").totp_pending_enc is not None

    # the first login with a code from the pending secret confirms it
    logged_in = reg.authenticate("dr-alice", PASSWORD, code(secret), client="10.0.0.7")
    assert logged_in is not None and logged_in.name == "dr-alice"
    row = env.row("dr-alice")
    assert row.totp_secret_enc is not None and row.totp_pending_enc is None
    assert reg.get("dr-alice").mfa_enrolled
    assert [e.outcome for e in env.audit("account.enrol-confirm")] == ["allowed"]

    # a later login, with the next code, works against the confirmed secret
    assert reg.authenticate("dr-alice", PASSWORD, code(secret, 1)) is not None
    # and enrolment cannot be restarted by someone who only knows the password
    with pytest.raises(AuthenticationError):
        reg.begin_enrolment("dr-alice", PASSWORD)
    assert verify_chain_ok(env)


def verify_chain_ok(env: Env) -> bool:
    with session_scope(env.sessions) as s:
        return verify_chain(s).ok


def test_list_and_get(reg: AccountRegistry) -> None:
    reg.request(request_for("dr-bob"), PASSWORD)
    reg.request(request_for("dr-alice"), PASSWORD)
    assert [a.name for a in reg.list()] == ["dr-alice", "dr-bob"]
    assert reg.get("dr-bob").email == "dr-bob@hospital.example"
    with pytest.raises(NotFoundError):
        reg.get("nobody")
    with pytest.raises(NotFoundError):
        reg.approve("nobody", by="helpdesk")


def test_duplicate_request_conflicts(reg: AccountRegistry) -> None:
    reg.request(request_for("dr-alice"), PASSWORD)
    with pytest.raises(ConflictError):
        reg.request(request_for("dr-alice"), "another good password")
    with pytest.raises(ConflictError):
        reg.create_active(request_for("dr-alice"), PASSWORD, by="admin")


def test_reject_and_approve_only_from_requested(reg: AccountRegistry) -> None:
    reg.request(request_for("dr-alice"), PASSWORD)
    assert reg.reject("dr-alice", by="helpdesk").status is AccountStatus.REJECTED
    with pytest.raises(ConflictError):
        reg.approve("dr-alice", by="helpdesk")
    with pytest.raises(ConflictError):
        reg.reject("dr-alice", by="helpdesk")
    assert reg.authenticate("dr-alice", PASSWORD, "123456") is None

    reg.request(request_for("dr-bob"), PASSWORD)
    reg.approve("dr-bob", by="helpdesk")
    with pytest.raises(ConflictError):
        reg.reject("dr-bob", by="helpdesk")


def test_password_policy_applies_and_stores_nothing(reg: AccountRegistry) -> None:
    with pytest.raises(ValidationError) as info:
        reg.request(request_for("dr-alice"), "too short")
    assert info.value.field == "password"
    with pytest.raises(ValidationError) as info:
        reg.request(request_for("dr-alice-smith"), "dr-alice-smith")
    assert info.value.field == "password"
    assert reg.list() == []
    reg.request(request_for("dr-alice"), PASSWORD)
    with pytest.raises(ValidationError) as info:
        reg.set_password("dr-alice", "short", by="helpdesk")
    assert info.value.field == "password"


def test_privileged_roles_cannot_be_requested(reg: AccountRegistry) -> None:
    with pytest.raises(ValidationError) as info:
        reg.request(request_for("dr-eve", Role.CLINICIAN, Role.HELPDESK), PASSWORD)
    assert info.value.field == "roles"
    # an administrator can still create one
    admin = reg.create_active(request_for("helpdesk-1", Role.HELPDESK), PASSWORD, by="admin")
    assert admin.roles == {Role.HELPDESK}


def test_set_password(reg: AccountRegistry) -> None:
    secret = enrolled(reg)
    reg.set_password("dr-alice", "a brand new passphrase", by="helpdesk")
    assert reg.authenticate("dr-alice", PASSWORD, code(secret, 1)) is None
    assert reg.authenticate("dr-alice", "a brand new passphrase", code(secret, 1)) is not None


# -- login refusals ------------------------------------------------------------------------


def test_wrong_password_wrong_code_and_reused_code_are_refused(env: Env) -> None:
    reg = env.registry(max_failures=6)
    secret = enrolled(reg)  # the current code has just been used
    assert reg.authenticate("dr-alice", PASSWORD + "x", code(secret, 1)) is None
    assert reg.authenticate("dr-alice", PASSWORD, wrong_code(secret)) is None
    assert reg.authenticate("dr-alice", PASSWORD, "") is None
    assert reg.authenticate("dr-alice", PASSWORD, None) is None
    # the code that was just accepted, and an older one, are refused
    assert reg.authenticate("dr-alice", PASSWORD, code(secret)) is None
    assert reg.authenticate("dr-alice", PASSWORD, code(secret, -1)) is None
    reasons = [e.detail for e in env.audit("account.login") if e.outcome == "denied"]
    assert reasons == [
        "reason=bad-password",
        "reason=bad-code",
        "reason=bad-code",
        "reason=bad-code",
        "reason=code-reused",
        "reason=code-reused",
    ]
    # those were 6 failures: the account is now locked
    assert reg.authenticate("dr-alice", PASSWORD, code(secret, 1)) is None
    assert env.audit("account.login")[-1].detail == "reason=locked"


def test_unknown_user_spends_one_hash(env: Env, reg: AccountRegistry) -> None:
    enrolled(reg)
    before = env.hasher.verifications
    assert reg.authenticate("nobody", PASSWORD, "123456", client="192.0.2.1") is None
    assert env.hasher.verifications == before + 1
    # a password typed into the user-name field is not written to the audit trail
    assert reg.authenticate("My Secret Passw0rd!", PASSWORD, "123456") is None
    entries = env.audit("account.login")[-2:]
    assert [(e.actor, e.outcome, e.detail) for e in entries] == [
        ("nobody", "denied", "reason=unknown-user"),
        ("-invalid-", "denied", "reason=unknown-user"),
    ]
    assert entries[0].client == "192.0.2.1"


def test_not_enrolled_is_refused(reg: AccountRegistry) -> None:
    reg.create_active(request_for("dr-alice"), PASSWORD, by="admin")
    assert reg.authenticate("dr-alice", PASSWORD, "123456") is None
    with pytest.raises(ConflictError):
        reg.current_code("dr-alice")


def test_wrong_code_keeps_enrolment_pending(env: Env, reg: AccountRegistry) -> None:
    reg.create_active(request_for("dr-alice"), PASSWORD, by="admin")
    secret = secret_of(reg.begin_enrolment("dr-alice", PASSWORD))
    assert reg.authenticate("dr-alice", PASSWORD, wrong_code(secret)) is None
    assert not reg.get("dr-alice").mfa_enrolled
    # asking again replaces the pending secret (e.g. the QR code was lost)
    second = secret_of(reg.begin_enrolment("dr-alice", PASSWORD))
    assert second != secret
    assert reg.authenticate("dr-alice", PASSWORD, code(secret)) is None
    assert reg.authenticate("dr-alice", PASSWORD, code(second)) is not None
    assert reg.get("dr-alice").mfa_enrolled


def test_five_failures_lock_and_the_lock_expires(env: Env) -> None:
    reg = env.registry(lockout_seconds=1)
    secret = enrolled(reg)
    for _ in range(5):
        assert reg.authenticate("dr-alice", "not the password", code(secret, 1)) is None
    locked = reg.get("dr-alice")
    assert locked.locked_until is not None and locked.locked_until.tzinfo is not None
    assert [e.actor for e in env.audit("account.lock")] == ["dr-alice"]
    # while locked even the right credentials fail, and no password is checked
    before = env.hasher.verifications
    assert reg.authenticate("dr-alice", PASSWORD, code(secret, 1)) is None
    assert env.hasher.verifications == before + 1  # the dummy hash, for flat timing
    assert reg.is_active("dr-alice")  # a lock is not a suspension: sessions stay valid
    time.sleep(1.1)
    assert reg.authenticate("dr-alice", PASSWORD, code(secret, 1)) is not None
    assert env.row("dr-alice").locked_until is None


def test_lock_written_outside_the_registry_is_enforced(env: Env, reg: AccountRegistry) -> None:
    """A lock stored as SQLite's zone-less text (e.g. by another process) is read as UTC."""
    secret = pyotp.random_base32()
    reg.create_active(request_for("dr-alice"), PASSWORD, by="admin", totp_secret=secret)

    def set_lock(value: datetime) -> None:
        with session_scope(env.sessions) as s:
            s.execute(
                text("UPDATE accounts SET locked_until = :v WHERE name = 'dr-alice'"),
                {"v": value.strftime("%Y-%m-%d %H:%M:%S.%f")},
            )

    set_lock(datetime.now(UTC) + timedelta(minutes=5))
    assert reg.get("dr-alice").locked_until.tzinfo is not None
    assert reg.authenticate("dr-alice", PASSWORD, code(secret)) is None
    set_lock(datetime.now(UTC) - timedelta(seconds=1))
    assert reg.authenticate("dr-alice", PASSWORD, code(secret)) is not None


def test_success_resets_the_failure_counter(reg: AccountRegistry) -> None:
    secret = pyotp.random_base32()
    reg.create_active(request_for("dr-alice"), PASSWORD, by="admin", totp_secret=secret)
    for _ in range(4):
        reg.authenticate("dr-alice", PASSWORD + "!", wrong_code(secret))
    assert reg.authenticate("dr-alice", PASSWORD, code(secret)) is not None
    for _ in range(4):
        reg.authenticate("dr-alice", PASSWORD + "!", wrong_code(secret))
    assert reg.authenticate("dr-alice", PASSWORD, code(secret, 1)) is not None


def test_enrolment_with_wrong_password_counts_towards_lockout(env: Env) -> None:
    reg = env.registry(max_failures=3)
    reg.create_active(request_for("dr-alice"), PASSWORD, by="admin")
    for _ in range(3):
        with pytest.raises(AuthenticationError) as info:
            reg.begin_enrolment("dr-alice", "wrong password!")
        assert "wrong password" not in str(info.value)
    with pytest.raises(AuthenticationError):
        reg.begin_enrolment("dr-alice", PASSWORD)  # locked now
    details = [e.detail for e in env.audit("account.enrol-begin")]
    assert details == ["reason=bad-password"] * 3 + ["reason=locked"]


def test_disabled_account_is_refused_and_inactive(reg: AccountRegistry) -> None:
    secret = enrolled(reg)
    assert reg.disable("dr-alice", by="helpdesk").status is AccountStatus.DISABLED
    assert not reg.is_active("dr-alice")
    assert reg.authenticate("dr-alice", PASSWORD, code(secret, 1)) is None
    with pytest.raises(ConflictError):
        reg.disable("dr-alice", by="helpdesk")
    reg.enable("dr-alice", by="helpdesk")
    assert reg.is_active("dr-alice")
    assert reg.authenticate("dr-alice", PASSWORD, code(secret, 1)) is not None
    assert not reg.is_active("nobody")
    assert not reg.is_active("Not A Name")


def test_reset_mfa_forces_reenrolment(env: Env, reg: AccountRegistry) -> None:
    old = enrolled(reg)
    account = reg.reset_mfa("dr-alice", by="helpdesk")
    assert not account.mfa_enrolled
    row = env.row("dr-alice")
    assert row.totp_secret_enc is None and row.totp_pending_enc is None
    assert reg.authenticate("dr-alice", PASSWORD, code(old, 1)) is None
    assert env.audit("account.login")[-1].detail == "reason=not-enrolled"
    new = secret_of(reg.begin_enrolment("dr-alice", PASSWORD))
    assert new != old
    assert reg.authenticate("dr-alice", PASSWORD, code(old, 1)) is None
    assert reg.authenticate("dr-alice", PASSWORD, code(new)) is not None
    assert reg.get("dr-alice").mfa_enrolled


def test_create_active_with_secret_is_enrolled(reg: AccountRegistry) -> None:
    secret = pyotp.random_base32()
    account = reg.create_active(
        request_for("demo-clin", Role.CLINICIAN), PASSWORD, by="cpms-admin", totp_secret=secret
    )
    assert account.is_active and account.mfa_enrolled
    assert reg.current_code("demo-clin") == code(secret)
    assert reg.authenticate("demo-clin", PASSWORD, reg.current_code("demo-clin")) is not None
    with pytest.raises(ValidationError) as info:
        reg.create_active(request_for("demo-two"), PASSWORD, by="cpms-admin", totp_secret="1!")
    assert info.value.field == "totp_secret"


def test_password_is_rehashed_when_parameters_change(env: Env) -> None:
    old = env.registry()
    secret = enrolled(old)
    assert ",t=1," in env.row("dr-alice").password_hash
    new = env.registry(password_hasher=CountingHasher(time_cost=2))
    assert new.authenticate("dr-alice", PASSWORD, code(secret, 1)) is not None
    stored = env.row("dr-alice").password_hash
    assert ",t=2," in stored
    assert new.passwords.verify(stored, PASSWORD)


# -- secrets at rest and in the audit trail ------------------------------------------------


def test_totp_secret_never_stored_in_plaintext(env: Env, reg: AccountRegistry) -> None:
    reg.create_active(request_for("dr-alice"), PASSWORD, by="admin")
    pending = secret_of(reg.begin_enrolment("dr-alice", PASSWORD))
    assert pending.encode() not in env.raw_bytes()
    reg.authenticate("dr-alice", PASSWORD, code(pending))  # confirmed now
    seeded = pyotp.random_base32()
    reg.create_active(request_for("dr-bob"), PASSWORD, by="admin", totp_secret=seeded)
    raw = env.raw_bytes()
    assert len(raw) > 10_000  # the file and WAL really were read
    for secret in (pending, seeded):
        assert secret.encode() not in raw
        assert secret.lower().encode() not in raw
    assert PASSWORD.encode() not in raw


def test_ciphertext_is_bound_to_its_row(env: Env, reg: AccountRegistry) -> None:
    """A secret copied into another account's row does not decrypt there."""
    enrolled(reg, "dr-alice")
    reg.create_active(request_for("dr-mallory"), PASSWORD, by="admin")
    with session_scope(env.sessions) as s:
        alice = s.get(AccountRow, "dr-alice")
        mallory = s.get(AccountRow, "dr-mallory")
        assert alice is not None and mallory is not None
        mallory.totp_secret_enc = alice.totp_secret_enc
    with pytest.raises(IntegrityError):
        reg.current_code("dr-mallory")


def test_audit_records_logins_without_secrets(env: Env, reg: AccountRegistry) -> None:
    secret = enrolled(reg)
    good = code(secret, 1)
    bad = wrong_code(secret)
    assert reg.authenticate("dr-alice", PASSWORD, bad, client="10.1.1.1") is None
    assert reg.authenticate("dr-alice", PASSWORD, good, client="10.1.1.2") is not None
    logins = env.audit("account.login")
    assert [(e.actor, e.outcome, e.client) for e in logins[-2:]] == [
        ("dr-alice", "denied", "10.1.1.1"),
        ("dr-alice", "allowed", "10.1.1.2"),
    ]
    actions = {e.action for e in env.audit()}
    assert {"account.request", "account.approve", "account.enrol-begin"} <= actions
    for entry in env.audit():
        text = " ".join([entry.actor, entry.action, entry.client, entry.detail])
        for secret_text in (PASSWORD, secret, good, bad):
            assert secret_text not in text
    assert verify_chain_ok(env)
