"""The hash-chained audit trail and the ``cpms-admin`` commands that operate on the store.

The chain must verify after real traffic, report an edited, removed or truncated entry by
its sequence number, and stay one unbroken chain under concurrent writers (SQLite's write
lock and PostgreSQL's ``SELECT … FOR UPDATE`` on the head row). The command-line tests
call :func:`cpms_hub.admin.main` with the deployment described by ``CPMS_*`` variables,
as an operator would.
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update

from cpms_hub import admin
from cpms_hub.crypto import Keyring
from cpms_hub.domain import (
    CaseDraft,
    NotFoundError,
    PermissionDeniedError,
)
from cpms_hub.policy import Decision
from cpms_hub.state import State, open_state
from cpms_hub.store import AuditContext
from cpms_hub.store.audit import entry_hash
from cpms_hub.store.schema import AuditHeadRow, AuditRow, CaseRow, DataKeyRow

CTX = AuditContext(actor="alice", client="10.0.0.7")


def allow(_ref: object) -> Decision:
    return Decision(True, ("test",))


def new_case(state: State, title: str = "Case", *, actor: str = "alice", pseudonym=None):
    return state.cases.create_case(
        CaseDraft(title=title, clinical_summary="summary"),
        owner=actor,
        hospital="Hospital A",
        network="ERN-TEST",
        ctx=AuditContext(actor=actor, client="10.0.0.7"),
        pseudonym=pseudonym,
    )


def traffic(state: State) -> int:
    """A bit of everything the store audits; returns how many entries it wrote."""
    cases = [new_case(state, f"Case {i}", pseudonym=f"PSN-{i}") for i in range(3)]  # 3
    state.cases.read_case(cases[0].id, authorize=allow, ctx=CTX)  # 1
    state.cases.update_case(cases[1].id, title="Renamed", authorize=allow, ctx=CTX)  # 1
    state.cases.list_cases(user="alice", network=None, authorize=allow, ctx=CTX)  # 3
    state.cases.lookup_pseudonym("PSN-2", authorize=allow, ctx=CTX)  # 1
    f = state.cases.add_file(
        cases[0].id,
        iter([b"x" * 70_000]),
        name="a.bin",
        media_type="application/pdf",
        max_size=10**6,
        authorize=allow,
        ctx=CTX,
    )  # 1
    _, reader = state.cases.open_file(cases[0].id, f.id, authorize=allow, ctx=CTX)  # 1
    reader.close()
    with pytest.raises(PermissionDeniedError):
        state.cases.read_case(
            cases[2].id, authorize=lambda ref: Decision(False, ("no",)), ctx=CTX
        )  # 1
    with pytest.raises(PermissionDeniedError):
        state.cases.record_denial(CTX, "case.create", ("token lacks cases:write",))  # 1
    state.cases.erase_case(cases[2].id, ctx=CTX)  # 1
    state.rotate_keys()  # 1
    return 15


def head(state: State) -> AuditHeadRow:
    with state.sessions() as s:
        return s.get(AuditHeadRow, 1)


# -- the chain -----------------------------------------------------------------------------


def test_chain_verifies_after_many_operations(backend: State) -> None:
    assert backend.verify_audit().ok  # the empty chain too
    written = traffic(backend)
    report = backend.verify_audit()
    assert report.ok, report.problems
    assert report.entries == written
    with backend.sessions() as s:
        entries = list(reversed(backend.audit.entries(s)))
    assert [e.seq for e in entries] == list(range(1, written + 1))
    assert entries[0].prev_hash == "0" * 64
    for before, after in zip(entries, entries[1:], strict=False):
        assert after.prev_hash == before.hash
    top = head(backend)
    assert (top.seq, top.hash) == (entries[-1].seq, entries[-1].hash)
    assert {e.outcome for e in entries} == {"allowed", "denied"}


@pytest.mark.parametrize("column", ["detail", "actor", "action", "outcome", "case_id", "at"])
def test_edited_entry_is_reported_by_its_seq(backend: State, column: str) -> None:
    written = traffic(backend)
    target = 7
    with backend.engine.begin() as conn:
        row = conn.execute(select(AuditRow).where(AuditRow.seq == target)).one()
        forged = {
            "detail": "nothing to see",
            "actor": "mallory",
            "action": "case.delete",
            "outcome": "denied",
            "case_id": None,
            "at": row.at - timedelta(days=1),
        }[column]
        assert forged != getattr(row, column)
        conn.execute(update(AuditRow).where(AuditRow.seq == target).values({column: forged}))

    report = backend.verify_audit()
    assert not report.ok
    assert report.entries == written
    assert report.problems == (f"entry {target}: content does not match its hash (edited)",)


def test_edited_entry_with_recomputed_hash_breaks_the_next_link(backend: State) -> None:
    traffic(backend)
    target = 4
    with backend.engine.begin() as conn:
        row = conn.execute(select(AuditRow).where(AuditRow.seq == target)).one()
        fields = {
            k: getattr(row, k)
            for k in ("seq", "at", "actor", "action", "case_id", "client", "outcome", "prev_hash")
        }
        fields["detail"] = "forged"
        conn.execute(
            update(AuditRow)
            .where(AuditRow.seq == target)
            .values(detail="forged", hash=entry_hash(**fields))
        )
    report = backend.verify_audit()
    assert not report.ok
    assert report.problems == (f"entry {target + 1}: does not follow the entry before it",)


def test_deleted_middle_entry_is_detected(backend: State) -> None:
    written = traffic(backend)
    with backend.engine.begin() as conn:
        conn.execute(delete(AuditRow).where(AuditRow.seq == 9))
    report = backend.verify_audit()
    assert not report.ok
    assert report.entries == written - 1
    assert "entry 9: missing (next present is 10)" in report.problems
    assert "entry 10: does not follow the entry before it" in report.problems


def test_deleted_last_entry_is_detected_by_the_head(backend: State) -> None:
    written = traffic(backend)
    with backend.engine.begin() as conn:
        conn.execute(delete(AuditRow).where(AuditRow.seq == written))
    report = backend.verify_audit()
    assert not report.ok
    assert report.entries == written - 1
    assert len(report.problems) == 1
    assert "chain head does not match the last entry" in report.problems[0]


def test_concurrent_appends_form_one_chain(backend: State) -> None:
    threads, per_thread = 8, 25
    start = threading.Barrier(threads)
    errors: list[BaseException] = []
    created: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                case = new_case(backend, f"T{n}-{i}", actor=f"user-{n}")
                with lock:
                    created.append(case.id)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert not any(t.is_alive() for t in pool), "writers still running after 120 s"
    assert errors == []

    total = threads * per_thread
    report = backend.verify_audit()
    assert report.ok, report.problems[:5]
    assert report.entries == total
    with backend.sessions() as s:
        entries = list(reversed(backend.audit.entries(s, limit=10_000)))
    assert [e.seq for e in entries] == list(range(1, total + 1))
    assert sorted(e.case_id for e in entries) == sorted(created)
    assert len(set(created)) == total
    assert head(backend).seq == total
    with backend.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(CaseRow)).scalar_one() == total


# -- cpms-admin ----------------------------------------------------------------------------


@pytest.fixture
def cli(backend: State, monkeypatch: pytest.MonkeyPatch) -> State:
    """``backend``, described to ``cpms-admin`` through the environment."""
    settings = backend.settings
    for name in list(os.environ):
        if name.startswith("CPMS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CPMS_STATE_DIR", settings.state_dir)
    monkeypatch.setenv("CPMS_DB_URL", settings.db_url)
    monkeypatch.setenv("CPMS_KEY_FILE", settings.key_file)
    monkeypatch.setenv("CPMS_BLOB_DIR", settings.blob_dir)
    return backend


def test_cli_verify_audit(cli: State, capsys: pytest.CaptureFixture[str]) -> None:
    written = traffic(cli)
    assert admin.main(["verify-audit"]) == 0
    assert f"intact: {written} entries" in capsys.readouterr().out

    with cli.engine.begin() as conn:
        conn.execute(update(AuditRow).where(AuditRow.seq == 3).values(actor="mallory"))
    assert admin.main(["verify-audit"]) == 1
    err = capsys.readouterr().err
    assert "BROKEN" in err and "entry 3:" in err


def test_cli_erase_case(cli: State, capsys: pytest.CaptureFixture[str]) -> None:
    victim = new_case(cli, "Erase via CLI")
    keeper = new_case(cli, "Stays")
    cli.cases.add_file(
        victim.id,
        iter([b"y" * 5000]),
        name="v.txt",
        media_type="text/plain",
        max_size=10**6,
        authorize=allow,
        ctx=CTX,
    )
    assert admin.main(["erase-case", victim.id, "--by", "dpo"]) == 0
    assert "1 files removed" in capsys.readouterr().out

    with pytest.raises(NotFoundError):
        cli.cases.read_case(victim.id, authorize=allow, ctx=CTX)
    with cli.engine.connect() as conn:
        assert (
            conn.execute(select(DataKeyRow).where(DataKeyRow.id == f"case:{victim.id}")).first()
            is None
        )
    assert cli.cases.read_case(keeper.id, authorize=allow, ctx=CTX).title == "Stays"
    with cli.sessions() as s:
        last = cli.audit.entries(s, case_id=victim.id, limit=1)[0]
    assert (last.action, last.actor, last.client, last.case_id) == (
        "case.erase",
        "dpo",
        "cli",
        victim.id,
    )
    assert cli.verify_audit().ok

    # an unknown case is a failed command, not a crash
    assert admin.main(["erase-case", victim.id]) == 1
    assert "no such case" in capsys.readouterr().err


def test_cli_rotate_keys(cli: State, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [new_case(cli, f"Rotate {i}") for i in range(3)]
    old_primary = cli.keyring.primary_id
    assert admin.main(["rotate-keys"]) == 0
    assert "3 data keys re-wrapped" in capsys.readouterr().out

    new_primary = Keyring.load(cli.settings.key_file).primary_id
    assert new_primary != old_primary
    with cli.engine.connect() as conn:
        assert set(conn.execute(select(DataKeyRow.kek_id)).scalars()) == {new_primary}
    reopened = open_state(cli.settings)
    try:
        for i, c in enumerate(cases):
            assert reopened.cases.read_case(c.id, authorize=allow, ctx=CTX).title == f"Rotate {i}"
    finally:
        reopened.close()
    assert cli.verify_audit().ok


def test_cli_rotation_does_not_break_an_already_open_store(cli: State) -> None:
    case = new_case(cli, "Read by the running service")
    assert admin.main(["rotate-keys"]) == 0
    assert cli.cases.read_case(case.id, authorize=allow, ctx=CTX).title == (
        "Read by the running service"
    )
