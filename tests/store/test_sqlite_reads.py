"""Reads straight through the ``sqlite3`` driver (:mod:`cpms_hub.store.sqlite_reads`).

The fast path must give exactly what the Core path gives (the same rows, the same
converted values), see at its next read whatever another connection or process has
committed (a destroyed key, a disabled account: no stale snapshot), never write, keep
one connection per thread, and close its connections with the state. Real SQLite
files, real keyrings; nothing mocked.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, text, update

from cpms_hub.accounts.registry import _GET, _to_account
from cpms_hub.domain import (
    AccountRequest,
    AccountStatus,
    CaseDraft,
    ConsentScope,
    MemberRole,
    Role,
)
from cpms_hub.domain.errors import AuthenticationError, KeyUnavailableError
from cpms_hub.policy import Decision
from cpms_hub.state import State, init_state
from cpms_hub.store import AuditContext, session_scope
from cpms_hub.store.case_reads import fetch_case
from cpms_hub.store.database import make_engine, read_connection
from cpms_hub.store.keys import case_key_id
from cpms_hub.store.schema import AccountRow, DataKeyRow
from cpms_hub.store.sqlite_reads import SqliteReader, reader_for
from tests.deployment import state_settings

CTX = AuditContext(actor="alice", client="10.0.0.7")
PASSWORD = "correct horse battery staple"


def allow(_ref: object) -> Decision:
    return Decision(True, ("test",))


@pytest.fixture
def state(tmp_path: Path) -> State:
    folder = tmp_path / "state"
    st = init_state(state_settings(folder, f"sqlite:///{folder / 'cpms.sqlite'}"))
    yield st
    st.close()


def reader(state: State) -> SqliteReader:
    found = reader_for(state.engine)
    assert found is not None
    return found


def new_case(state: State, title: str = "Case") -> str:
    return state.cases.create_case(
        CaseDraft(title=title, clinical_summary=f"summary of {title}"),
        owner="alice",
        hospital="Hospital A",
        network="ERN-TEST",
        ctx=CTX,
    ).id


def consent(state: State, case_id: str, *scopes: ConsentScope) -> str:
    return state.cases.record_consent(
        case_id,
        scopes=frozenset(scopes),
        form_version="v2",
        language="fr",
        signed_on=date(2026, 3, 1),
        form_file_id=None,
        authorize=allow,
        ctx=CTX,
    ).id


def both_paths(state: State, case_id: str):  # noqa: ANN201 - two CaseSnapshot | None
    with read_connection(state.sessions) as conn:
        core = fetch_case(conn, case_id)
    return fetch_case(reader(state), case_id), core


def account(state: State, name: str, *roles: Role) -> None:
    state.accounts.request(
        AccountRequest(
            name=name,
            email=f"{name}@hospital.example",
            full_name=f"Dr {name.title()}",
            hospital="Hospital A",
            network="ERN-TEST",
            roles=frozenset(roles or {Role.CLINICIAN}),
        ),
        PASSWORD,
    )
    state.accounts.approve(name, by="helpdesk")


def test_case_reads_give_what_the_core_path_gives(state: State) -> None:
    bare = new_case(state, "No members")
    with session_scope(state.sessions) as s:
        s.execute(text("DELETE FROM case_members WHERE case_id = :c"), {"c": bare})
    full = new_case(state, "Members and consent")
    state.cases.add_member(full, "bob", MemberRole.PANEL_MEMBER, ctx=CTX)
    state.cases.add_member(full, "carol", MemberRole.ASSISTANT, ctx=CTX)
    consent(state, full, ConsentScope.PANEL_DISCUSSION)
    latest = consent(state, full, ConsentScope.PANEL_DISCUSSION, ConsentScope.REGISTRIES)
    state.cases.withdraw_consent(
        full,
        latest,
        scope=ConsentScope.REGISTRIES,
        reason="asked by the family",
        on=date(2026, 3, 2),
        authorize=allow,
        ctx=CTX,
    )
    consented = new_case(state, "Consent only")
    consent(state, consented, ConsentScope.PANEL_DISCUSSION, ConsentScope.RESEARCH_CONTACT)
    shredded = new_case(state, "Key destroyed")
    with session_scope(state.sessions) as s:
        s.execute(delete(DataKeyRow).where(DataKeyRow.id == case_key_id(shredded)))

    for case_id in (bare, full, consented, shredded):
        fast, core = both_paths(state, case_id)
        assert fast == core and fast is not None
        # times come back UTC-aware, as through UTCDateTime on the Core path
        assert fast.ref.created_at.tzinfo is UTC
        assert all(m.added_at.tzinfo is UTC for m in fast.ref.members)
    fast, _ = both_paths(state, full)
    assert [m.user for m in fast.ref.members] == ["alice", "bob", "carol"]
    assert fast.ref.consent == frozenset({ConsentScope.PANEL_DISCUSSION})
    assert fast.ref.consent_withdrawn == frozenset({ConsentScope.REGISTRIES})
    assert both_paths(state, bare)[0].ref.members == ()
    assert both_paths(state, shredded)[0].wrapped_key is None
    assert both_paths(state, "00000000-0000-4000-8000-000000000000") == (None, None)
    # and the store refuses the shredded case at the next read, as before
    with pytest.raises(KeyUnavailableError):
        state.cases.read_case(shredded, authorize=allow, ctx=CTX)


def test_account_reads_give_what_the_core_path_gives(state: State) -> None:
    account(state, "dr-alice", Role.CLINICIAN, Role.PANEL_MEMBER)
    account(state, "dr-bob")
    with session_scope(state.sessions) as s:
        s.execute(
            update(AccountRow)
            .where(AccountRow.name == "dr-bob")
            .values(locked_until=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC), expertise="ORPHA:558")
        )
    for name in ("dr-alice", "dr-bob", "nobody"):
        with read_connection(state.sessions) as conn:
            core = conn.execute(_GET, {"name": name}).one_or_none()
        fast = reader(state).one_or_none(_GET, {"name": name})
        if core is None:
            assert fast is None
            continue
        assert tuple(fast) == tuple(core)
        assert _to_account(fast) == _to_account(core) == state.accounts.get(name)
    assert state.accounts.get("dr-bob").locked_until == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def _in_another_process(db: Path, sql: str, *params: str) -> None:
    code = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute('PRAGMA busy_timeout=30000'); c.execute(sys.argv[2], sys.argv[3:]); c.close()"
    )
    subprocess.run([sys.executable, "-c", code, str(db), sql, *params], check=True, timeout=60)


def test_what_another_process_commits_is_seen_at_the_next_read(state: State) -> None:
    db = Path(state.engine.url.database)
    case_id = new_case(state)
    account(state, "dr-alice")
    # read once on this thread first, so its connection exists and has read the pages
    assert state.cases.read_case(case_id, authorize=allow, ctx=CTX).title == "Case"
    assert state.accounts.get("dr-alice").status is AccountStatus.ACTIVE

    _in_another_process(db, "DELETE FROM data_keys WHERE id = ?", case_key_id(case_id))
    with pytest.raises(KeyUnavailableError):
        state.cases.read_case(case_id, authorize=allow, ctx=CTX)

    _in_another_process(db, "UPDATE accounts SET status = 'disabled' WHERE name = ?", "dr-alice")
    assert state.accounts.get("dr-alice").status is AccountStatus.DISABLED


def test_a_disable_through_another_engine_refuses_the_next_request(state: State) -> None:
    from cpms_hub.policy.scopes import Scope
    from cpms_hub.service.auth import Authenticator, Identity

    account(state, "dr-alice")
    auth = Authenticator(None, state.accounts, service_prefix="/services/cpms-store/")
    who = Identity("dr-alice", frozenset({Scope.CASES_READ}))
    assert auth.actor_of(who).name == "dr-alice"
    other = make_engine(str(state.engine.url))
    try:
        with other.begin() as conn:
            conn.execute(
                update(AccountRow).where(AccountRow.name == "dr-alice").values(status="disabled")
            )
    finally:
        other.dispose()
    with pytest.raises(AuthenticationError):
        auth.actor_of(who)


def test_the_connection_refuses_writes(state: State) -> None:
    case_id = new_case(state)
    fetch_case(reader(state), case_id)  # opens this thread's connection
    conn = reader(state)._connection()
    for sql in (
        "DELETE FROM data_keys",
        "UPDATE accounts SET status = 'active'",
        "INSERT INTO cases (id) VALUES ('x')",
    ):
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute(sql)
    assert fetch_case(reader(state), case_id) is not None


def test_threads_read_at_once_each_on_its_own_connection(state: State) -> None:
    case_ids = [new_case(state, f"C{i}") for i in range(6)]
    expected = {c: both_paths(state, c)[1] for c in case_ids}
    connections: dict[int, int] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(60):
                case_id = case_ids[(n + i) % len(case_ids)]
                assert fetch_case(reader(state), case_id) == expected[case_id]
            connections[n] = id(reader(state)._connection())
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    assert len(set(connections.values())) == 8


def test_connections_close_with_the_state_and_reopen_after(state: State) -> None:
    case_id = new_case(state)
    fetch_case(reader(state), case_id)
    conn = reader(state)._connection()
    state.engine.dispose()  # what State.close does
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    # the engine still works after dispose, like its pool: a new connection is opened
    assert fetch_case(reader(state), case_id) is not None
    assert reader(state)._connection() is not conn


def test_no_fast_path_without_a_database_file() -> None:
    engine = create_engine("sqlite://")
    try:
        assert reader_for(engine) is None
    finally:
        engine.dispose()
