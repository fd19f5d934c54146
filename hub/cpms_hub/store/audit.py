"""The audit trail: append-only, hash-chained, free of patient data.

Each entry's hash is SHA-256 over a canonical JSON form of its fields and the
previous entry's hash. Appends lock the single ``audit_head`` row
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite transactions here already hold
the write lock), so concurrent writers extend one chain instead of forking it.
An entry is written in the same transaction as the change it records: a
rolled-back change leaves no entry and an entry never describes a change that
did not happen. Denied and failed requests get an entry of their own.

:func:`verify_chain` recomputes every hash; an edited, deleted, inserted or
reordered entry breaks the chain at a position it reports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from cpms_hub.domain import AuditEntry

from .driver_statements import DriverStatement
from .schema import AuditHeadRow, AuditRow

__all__ = ["AuditTrail", "ChainReport", "entry_fields", "entry_hash", "verify_chain"]

GENESIS = "0" * 64


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    case_id: str | None,
    client: str,
    outcome: str,
    detail: str,
    prev_hash: str,
) -> str:
    canonical = json.dumps(
        [seq, _utc_iso(at), actor, action, case_id, client, outcome, detail, prev_hash],
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _utc_iso(at: datetime) -> str:
    if at.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_HEAD_FOR_UPDATE = (
    select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == 1).with_for_update()
)
_MOVE_HEAD = (
    update(AuditHeadRow)
    .where(AuditHeadRow.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)
#: every column bound by name: Core and the driver's form both take the rows' dicts
_INSERT = insert(AuditRow).values({c.key: bindparam(c.key) for c in AuditRow.__table__.c})


class _DriverAppend:
    """The three statements of an append compiled for SQLite's driver (see ``append_many``)."""

    def __init__(self, dialect: Dialect) -> None:
        # SQLite compiles FOR UPDATE to nothing: its transaction holds the write lock
        self.head = DriverStatement(_HEAD_FOR_UPDATE, dialect)
        self.insert = DriverStatement(_INSERT, dialect)
        self.move_head = DriverStatement(_MOVE_HEAD, dialect)


_DRIVER_APPENDS: dict[type, _DriverAppend] = {}


def entry_fields(
    *,
    actor: str,
    action: str,
    outcome: str,
    client: str = "",
    case_id: str | None = None,
    detail: str = "",
) -> dict:
    """One entry's fields as :meth:`AuditTrail.append_many` takes them: the keywords that
    every way of appending an entry accepts (a misspelt one is a ``TypeError`` here)."""
    return {
        "actor": actor,
        "action": action,
        "outcome": outcome,
        "client": client,
        "case_id": case_id,
        "detail": detail,
    }


class AuditTrail:
    """Appends entries to the chain; one instance per store."""

    def append(self, session: Session, **entry: Any) -> AuditEntry:
        """Append one entry (the keywords of :func:`entry_fields`) in ``session``'s
        transaction (it commits with the change)."""
        return self.append_many(session, [entry_fields(**entry)])[0]

    def append_many(self, session: Session | Connection, entries: list[dict]) -> list[AuditEntry]:
        """Append ``entries`` (dicts made by :func:`entry_fields`), chained in order.

        The head is read and locked once and updated once, whatever the number
        of entries: :class:`~.audit_commit.AuditGroupCommit` writes the entries
        of many concurrent reads this way.
        """
        # Core statements on the session's connection: this runs on every request,
        # and the ORM's execution path costs more than the statements themselves
        conn = session.connection() if isinstance(session, Session) else session
        # on SQLite the statements go to the transaction's own driver connection: the
        # audit writer appends for every read, and SQLAlchemy's execution path cost it
        # more than the statements (its groups then held the interpreter lock longer,
        # which showed in the reads' p99); SQLite's write lock is already held here
        driver = None
        if conn.dialect.name == "sqlite":
            append = _DRIVER_APPENDS.get(type(conn.dialect))
            if append is None:
                append = _DRIVER_APPENDS[type(conn.dialect)] = _DriverAppend(conn.dialect)
            driver = conn.connection.driver_connection
            [head] = append.head.rows(
                driver.execute(append.head.sql, append.head.bind({})).fetchall()
            )
        else:
            head = conn.execute(_HEAD_FOR_UPDATE).one()
        seq, prev = head.seq, head.hash
        # microsecond precision survives both backends, so hashes recompute exactly
        at = datetime.now(UTC)
        rows, out = [], []
        for e in entries:
            seq += 1
            client = e.get("client", "")[:64]
            case_id, detail = e.get("case_id"), e.get("detail", "")
            actor, action, outcome = e["actor"], e["action"], str(e["outcome"])
            digest = entry_hash(
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                case_id=case_id,
                client=client,
                outcome=outcome,
                detail=detail,
                prev_hash=prev,
            )
            rows.append(
                {
                    "seq": seq,
                    "at": at,
                    "actor": actor,
                    "action": action,
                    "case_id": case_id,
                    "client": client,
                    "outcome": outcome,
                    "detail": detail,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            out.append(
                AuditEntry(seq, at, actor, action, case_id, client, outcome, detail, prev, digest)
            )
            prev = digest
        moved = {"new_seq": seq, "new_hash": prev}
        if driver is not None:
            driver.executemany(append.insert.sql, [append.insert.bind(r) for r in rows])
            driver.execute(append.move_head.sql, append.move_head.bind(moved))
        else:
            conn.execute(_INSERT, rows)
            conn.execute(_MOVE_HEAD, moved)
        return out

    def entries(
        self, session: Session, *, case_id: str | None = None, limit: int = 1000
    ) -> list[AuditEntry]:
        stmt = select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit)
        if case_id is not None:
            stmt = stmt.where(AuditRow.case_id == case_id)
        return [_to_entry(r) for r in session.scalars(stmt)]


def _to_entry(r: AuditRow) -> AuditEntry:
    at = r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)
    return AuditEntry(
        r.seq, at, r.actor, r.action, r.case_id, r.client, r.outcome, r.detail, r.prev_hash, r.hash
    )


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    entries: int
    problems: tuple[str, ...]


def _iter_rows(session: Session, batch: int = 5000) -> Iterator[AuditRow]:
    last = 0
    while True:
        rows = list(
            session.scalars(
                select(AuditRow).where(AuditRow.seq > last).order_by(AuditRow.seq).limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify_chain(session: Session) -> ChainReport:
    """Recompute the whole chain; report every break by sequence number."""
    problems: list[str] = []
    prev = GENESIS
    expected_seq = 1
    count = 0
    for r in _iter_rows(session):
        count += 1
        if r.seq != expected_seq:
            problems.append(f"entry {expected_seq}: missing (next present is {r.seq})")
        if r.prev_hash != prev:
            problems.append(f"entry {r.seq}: does not follow the entry before it")
        recomputed = entry_hash(
            seq=r.seq,
            at=r.at,
            actor=r.actor,
            action=r.action,
            case_id=r.case_id,
            client=r.client,
            outcome=r.outcome,
            detail=r.detail,
            prev_hash=r.prev_hash,
        )
        if recomputed != r.hash:
            problems.append(f"entry {r.seq}: content does not match its hash (edited)")
        prev = r.hash
        expected_seq = r.seq + 1
    head = session.scalars(select(AuditHeadRow).where(AuditHeadRow.id == 1)).one_or_none()
    if head is None or head.hash != prev or head.seq != expected_seq - 1:
        problems.append("chain head does not match the last entry (entries removed at the end)")
    return ChainReport(ok=not problems, entries=count, problems=tuple(problems))
