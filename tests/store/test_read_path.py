"""The case read path: one Core statement, reads outside the write lock, grouped audit commits.

``read_case`` must return exactly what the ORM path returns (members in order, the latest
consent with its withdrawals, the content), leave one audit entry per read in one
unbroken chain when many threads read and write at once, and never answer a read whose
audit entry could not be committed. ``read_case_async`` (reads served on an event loop)
must keep every one of those promises, share groups with the blocking readers, and
write a lone read at once. Run on SQLite and on real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import contextmanager
from datetime import date

import pytest
from sqlalchemy import delete, text

from cpms_hub.domain import (
    CaseDraft,
    ConsentScope,
    MemberRole,
    NotFoundError,
    PermissionDeniedError,
)
from cpms_hub.domain.errors import KeyUnavailableError
from cpms_hub.policy import Decision
from cpms_hub.state import State
from cpms_hub.store import AuditContext, session_scope
from cpms_hub.store.keys import case_key_id
from cpms_hub.store.schema import DataKeyRow

CTX = AuditContext(actor="alice", client="10.0.0.7")


def allow(_ref: object) -> Decision:
    return Decision(True, ("test",))


def deny(_ref: object) -> Decision:
    return Decision(False, ("not on this case's panel",))


def new_case(state: State, title: str = "Case", *, actor: str = "alice") -> str:
    return state.cases.create_case(
        CaseDraft(title=title, clinical_summary=f"summary of {title}"),
        owner=actor,
        hospital="Hospital A",
        network="ERN-TEST",
        ctx=AuditContext(actor=actor, client="10.0.0.7"),
    ).id


def audit_entries(state: State, case_id: str | None = None) -> list:
    with state.sessions() as s:
        return list(reversed(state.audit.entries(s, case_id=case_id, limit=100_000)))


def assert_last_entry_is_the_refusal(state: State) -> None:
    last = audit_entries(state)[-1]
    assert (last.action, last.outcome, last.detail) == (
        "case.read",
        "denied",
        "not on this case's panel",
    )


def test_read_returns_what_the_orm_path_returns(backend: State) -> None:
    case_id = new_case(backend, "Members and consent")
    backend.cases.add_member(case_id, "bob", MemberRole.PANEL_MEMBER, ctx=CTX)
    backend.cases.add_member(case_id, "carol", MemberRole.ASSISTANT, ctx=CTX)
    for scopes in (
        {ConsentScope.PANEL_DISCUSSION},
        {ConsentScope.PANEL_DISCUSSION, ConsentScope.REGISTRIES},
    ):
        latest = backend.cases.record_consent(
            case_id,
            scopes=frozenset(scopes),
            form_version="v2",
            language="fr",
            signed_on=date(2026, 3, 1),
            form_file_id=None,
            authorize=allow,
            ctx=CTX,
        )
    backend.cases.withdraw_consent(
        case_id,
        latest.id,
        scope=ConsentScope.REGISTRIES,
        reason="asked by the family",
        on=date(2026, 3, 2),
        authorize=allow,
        ctx=CTX,
    )
    # the ORM path (list_cases decrypts through the mapped rows and their relationships)
    (via_orm,) = backend.cases.list_cases(user="alice", network=None, authorize=allow, ctx=CTX)
    seen = []
    read = backend.cases.read_case(
        case_id, authorize=lambda ref: seen.append(ref) or allow(ref), ctx=CTX
    )
    assert read == via_orm
    assert [m.user for m in read.members] == ["alice", "bob", "carol"]
    assert read.consent == frozenset({ConsentScope.PANEL_DISCUSSION})
    assert read.consent_withdrawn == frozenset({ConsentScope.REGISTRIES})
    # policy saw the same view the other paths give it
    assert seen == [backend.cases.case_ref(case_id)]
    last = audit_entries(backend, case_id)[-1]
    assert (last.action, last.outcome, last.actor, last.client) == (
        "case.read",
        "allowed",
        "alice",
        "10.0.0.7",
    )


def test_a_case_without_members_or_consent_reads(backend: State) -> None:
    case_id = new_case(backend)
    with session_scope(backend.sessions) as s:
        s.execute(text("DELETE FROM case_members WHERE case_id = :c"), {"c": case_id})
    case = backend.cases.read_case(case_id, authorize=allow, ctx=CTX)
    assert case.members == () and case.consent == frozenset()
    assert case.title == "Case"


def test_unknown_malformed_denied_and_shredded(backend: State) -> None:
    case_id = new_case(backend)
    before = len(audit_entries(backend))
    for bad in ("00000000-0000-4000-8000-000000000000", "not-a-uuid", "' OR 1=1 --"):
        with pytest.raises(NotFoundError):
            backend.cases.read_case(bad, authorize=allow, ctx=CTX)
    assert len(audit_entries(backend)) == before  # nothing to audit: no case was touched

    with pytest.raises(PermissionDeniedError) as refused:
        backend.cases.read_case(case_id, authorize=deny, ctx=CTX)
    assert refused.value.reasons == ("not on this case's panel",)
    assert_last_entry_is_the_refusal(backend)

    # a data key destroyed by another process stops the very next read
    with session_scope(backend.sessions) as s:
        s.execute(delete(DataKeyRow).where(DataKeyRow.id == case_key_id(case_id)))
    with pytest.raises(KeyUnavailableError):
        backend.cases.read_case(case_id, authorize=allow, ctx=CTX)
    assert backend.verify_audit().ok


def test_concurrent_reads_and_writes_form_one_chain(backend: State) -> None:
    case_ids = [new_case(backend, f"C{i}") for i in range(4)]
    start_seq = len(audit_entries(backend))
    threads, per_thread = 12, 15
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                if n % 4 == 0 and i % 5 == 0:  # writers among the readers
                    new_case(backend, f"W{n}-{i}", actor=f"writer-{n}")
                else:
                    backend.cases.read_case(
                        case_ids[(n + i) % 4],
                        authorize=allow,
                        ctx=AuditContext(actor=f"reader-{n}"),
                    )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(180)
    assert not any(t.is_alive() for t in pool), "still running after 180 s"
    assert errors == []

    writes = sum(1 for n in range(threads) if n % 4 == 0) * len(range(0, per_thread, 5))
    reads = threads * per_thread - writes
    report = backend.verify_audit()
    assert report.ok, report.problems[:5]
    entries = audit_entries(backend)[start_seq:]
    assert len(entries) == reads + writes
    assert [e.seq for e in entries] == list(range(start_seq + 1, start_seq + reads + writes + 1))
    per_reader: dict[str, int] = {}
    for e in entries:
        if e.action == "case.read":
            per_reader[e.actor] = per_reader.get(e.actor, 0) + 1
    readers = {f"reader-{n}": per_thread for n in range(threads) if n % 4}
    readers.update({f"reader-{n}": per_thread - 3 for n in range(threads) if n % 4 == 0})
    assert per_reader == readers


def test_a_read_whose_audit_entry_cannot_be_written_is_not_answered(backend: State) -> None:
    """The database refuses audit inserts (a trigger): the read fails, nothing is returned."""
    case_id = new_case(backend)
    with audit_refused(backend):
        before = len(audit_entries(backend))
        results: list[object] = []

        def reader() -> None:
            try:
                results.append(backend.cases.read_case(case_id, authorize=allow, ctx=CTX))
            except Exception as exc:  # noqa: BLE001 - the failure is what we check
                results.append(exc)

        pool = [threading.Thread(target=reader) for _ in range(6)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(60)
        assert len(results) == 6
        assert all(isinstance(r, Exception) for r in results), results  # not one came back
    assert len(audit_entries(backend)) == before
    assert backend.verify_audit().ok
    # and the store carries on once the database accepts entries again
    assert backend.cases.read_case(case_id, authorize=allow, ctx=CTX).title == "Case"
    assert backend.verify_audit().ok


@contextmanager
def audit_refused(state: State):  # noqa: ANN201 - a context manager
    """While inside, the database refuses every audit insert (a trigger)."""
    sqlite = state.engine.dialect.name == "sqlite"
    with state.engine.begin() as conn:
        if sqlite:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ "
                "BEGIN RAISE EXCEPTION 'audit refused'; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
                "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
            )
    try:
        yield
    finally:
        with state.engine.begin() as conn:
            if sqlite:
                conn.exec_driver_sql("DROP TRIGGER refuse_audit")
            else:
                conn.exec_driver_sql("DROP TRIGGER refuse_audit ON audit_log")
                conn.exec_driver_sql("DROP FUNCTION refuse_audit()")


def test_async_reads_share_groups_with_blocking_readers_in_one_chain(backend: State) -> None:
    case_ids = [new_case(backend, f"A{i}") for i in range(3)]
    start_seq = len(audit_entries(backend))
    backend.cases.audit_commit.window = 0.05  # wide, so that groups surely form
    loop_reads, thread_reads = 60, 4 * 10
    errors: list[BaseException] = []

    def blocking_reader(n: int) -> None:
        try:
            for i in range(10):
                backend.cases.read_case(
                    case_ids[i % 3], authorize=allow, ctx=AuditContext(actor=f"thread-{n}")
                )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    async def on_the_loop() -> list:
        async def one(i: int):  # noqa: ANN202
            return await backend.cases.read_case_async(
                case_ids[i % 3], authorize=allow, ctx=AuditContext(actor="loop")
            )

        return await asyncio.gather(*(one(i) for i in range(loop_reads)))

    pool = [threading.Thread(target=blocking_reader, args=(n,)) for n in range(4)]
    for t in pool:
        t.start()
    cases = asyncio.run(on_the_loop())
    for t in pool:
        t.join(60)
    assert errors == []
    assert [c.title for c in cases] == [f"A{i % 3}" for i in range(loop_reads)]
    report = backend.verify_audit()
    assert report.ok, report.problems[:5]
    entries = audit_entries(backend)[start_seq:]
    assert [e.seq for e in entries] == list(range(start_seq + 1, start_seq + len(entries) + 1))
    actors: dict[str, int] = {}
    for e in entries:
        actors[e.actor] = actors.get(e.actor, 0) + 1
    assert actors == {"loop": loop_reads, **{f"thread-{n}": 10 for n in range(4)}}
    assert len(entries) == loop_reads + thread_reads
    # the loop's reads were written in shared transactions, not one each
    assert max(backend.cases.audit_commit.group_sizes) > 1


def test_a_lone_async_read_is_written_at_once(backend: State) -> None:
    """The commit window applies under sustained load only: a quiet read does not wait."""
    case_id = new_case(backend, "Quiet")
    backend.cases.audit_commit.window = 30.0
    began = time.monotonic()
    for _ in range(3):  # one after another: no read arrives while another is written
        case = asyncio.run(backend.cases.read_case_async(case_id, authorize=allow, ctx=CTX))
        assert case.title == "Quiet"
    assert time.monotonic() - began < 10


def test_async_reads_are_audited_when_denied_and_fail_without_their_entry(
    backend: State,
) -> None:
    case_id = new_case(backend, "Async")
    with pytest.raises(PermissionDeniedError) as refused:
        asyncio.run(backend.cases.read_case_async(case_id, authorize=deny, ctx=CTX))
    assert refused.value.reasons == ("not on this case's panel",)
    assert_last_entry_is_the_refusal(backend)
    with pytest.raises(NotFoundError):
        asyncio.run(backend.cases.read_case_async("no-such-case", authorize=allow, ctx=CTX))

    async def readers() -> list:
        return await asyncio.gather(
            *(backend.cases.read_case_async(case_id, authorize=allow, ctx=CTX) for _ in range(8)),
            return_exceptions=True,
        )

    before = len(audit_entries(backend))
    with audit_refused(backend):
        results = asyncio.run(readers())
    assert len(results) == 8
    assert all(isinstance(r, Exception) for r in results), results  # not one case came back
    assert len(audit_entries(backend)) == before
    assert backend.verify_audit().ok
    assert (
        asyncio.run(backend.cases.read_case_async(case_id, authorize=allow, ctx=CTX)).title
        == "Async"
    )


def test_a_transaction_reads_a_case_key_once_and_forgets_it_when_it_ends(backend: State) -> None:
    """Listings decrypt row after row of one case: its key is selected once per transaction."""
    from sqlalchemy import event

    case_id = new_case(backend, "Listing")
    key_selects: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        if "FROM data_keys" in statement:
            key_selects.append(statement)

    event.listen(backend.engine, "before_cursor_execute", count)
    try:
        with session_scope(backend.sessions, write=False) as s:
            first = backend.cases._cipher(s, case_id)  # noqa: SLF001
            assert all(backend.cases._cipher(s, case_id) is first for _ in range(20))  # noqa: SLF001
        assert len(key_selects) == 1
        with session_scope(backend.sessions, write=False) as s:
            backend.cases._cipher(s, case_id)  # noqa: SLF001 - a new transaction reads it again
        assert len(key_selects) == 2
        with session_scope(backend.sessions) as s:
            backend.cases._cipher(s, case_id)  # noqa: SLF001
            backend.keys.destroy(s, case_key_id(case_id))
            with pytest.raises(KeyUnavailableError):  # shredded: not even this transaction
                backend.cases._cipher(s, case_id)  # noqa: SLF001
    finally:
        event.remove(backend.engine, "before_cursor_execute", count)
