"""The read of one case in one round trip, on SQLAlchemy Core.

Reading a case is the store's most frequent request. Through the ORM it took
three statements (the row, then a select-in of members and one of consents),
plus a fourth for the wrapped data key, and the unit of work's bookkeeping on
top; here one statement brings everything a read needs:

* the case row,
* its members (one result row per member: a LEFT JOIN, so a case without
  members still comes back),
* the scopes of its *latest* consent record (a correlated sub-select picks it,
  latest ``recorded_at`` first, the id breaking ties),
* its wrapped data key (a LEFT JOIN on ``data_keys``): every read still reads
  the key's row, so a key destroyed by another process stops reads at once.

The statement is built once at import and compiled once by SQLAlchemy's cache;
a call binds the case id and the key id. Both SQLite and PostgreSQL run it as
it is; on a SQLite file it goes straight through the driver
(:mod:`.sqlite_reads`), without a pooled connection or a transaction of ours.
Nothing here decrypts: :class:`CaseSnapshot` holds ciphertext and the clear
columns, and :mod:`.cases` decrypts after policy has allowed the read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, select

from cpms_hub.domain import CaseMember, CaseRef, CaseStatus, ConsentScope, MemberRole

from .keys import case_key_id
from .schema import CaseMemberRow, CaseRow, ConsentRow, DataKeyRow
from .sqlite_reads import SqliteReader

__all__ = ["CaseSnapshot", "fetch_case"]

_cases = CaseRow.__table__
_members = CaseMemberRow.__table__
_consents = ConsentRow.__table__
_keys = DataKeyRow.__table__

_latest_consent = (
    select(_consents.c.id)
    .where(_consents.c.case_id == _cases.c.id)
    .order_by(_consents.c.recorded_at.desc(), _consents.c.id.desc())
    .limit(1)
    .correlate(_cases)
    .scalar_subquery()
)

_READ = (
    select(
        _cases.c.owner,
        _cases.c.hospital,
        _cases.c.network,
        _cases.c.status,
        _cases.c.title_enc,
        _cases.c.summary_enc,
        _cases.c.content_enc,
        _cases.c.schema_version,
        _cases.c.created_at,
        _cases.c.updated_at,
        _keys.c.wrapped,
        _members.c.user,
        _members.c.role,
        _members.c.added_at,
        _consents.c.scopes,
        _consents.c.withdrawn,
    )
    .select_from(
        _cases.outerjoin(_members, _members.c.case_id == _cases.c.id)
        .outerjoin(_keys, _keys.c.id == bindparam("key_id"))
        .outerjoin(_consents, _consents.c.id == _latest_consent)
    )
    .where(_cases.c.id == bindparam("case_id"))
)


@dataclass(frozen=True, slots=True)
class CaseSnapshot:
    """A case as stored: the policy view (``ref``), its ciphertext and wrapped key."""

    ref: CaseRef
    title_enc: bytes
    summary_enc: bytes
    content_enc: bytes | None
    schema_version: int
    #: None when the data key has been destroyed (the case is being erased)
    wrapped_key: bytes | None


def _scopes(text: str | None) -> frozenset[ConsentScope]:
    return frozenset(ConsentScope(s) for s in (text or "").split(",") if s)


def fetch_case(source: Connection | SqliteReader, case_id: str) -> CaseSnapshot | None:
    """The case ``case_id`` in one statement, or None if there is no such case.

    ``source`` is a Core connection (in a read-only transaction) or, on a SQLite
    file, the engine's :class:`~.sqlite_reads.SqliteReader`: both give the same rows
    (see :func:`~.sqlite_reads.read_statements`).
    """
    rows = source.execute(_READ, {"case_id": case_id, "key_id": case_key_id(case_id)}).all()
    if not rows:
        return None
    first = rows[0]
    members: list[tuple[datetime, str, str]] = [
        (r.added_at, r.user, r.role) for r in rows if r.user is not None
    ]
    members.sort(key=lambda m: (m[0], m[1]))
    withdrawn = _scopes(first.withdrawn)
    ref = CaseRef(
        id=case_id,
        owner=first.owner,
        hospital=first.hospital,
        network=first.network,
        status=CaseStatus(first.status),
        created_at=first.created_at,
        updated_at=first.updated_at,
        members=tuple(CaseMember(user, MemberRole(role), at) for at, user, role in members),
        consent=_scopes(first.scopes) - withdrawn,
        consent_withdrawn=withdrawn,
    )
    return CaseSnapshot(
        ref=ref,
        title_enc=first.title_enc,
        summary_enc=first.summary_enc,
        content_enc=first.content_enc,
        schema_version=first.schema_version,
        wrapped_key=first.wrapped,
    )
