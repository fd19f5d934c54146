"""Group commit of audit entries for reads: one transaction for many requests.

A read changes nothing but must leave an audit entry before it answers. Given
a write transaction of its own, every read paid for taking the database's
write lock, reading the chain head, inserting, updating the head and
committing — and held that lock while it also read and decrypted the case, so
concurrent reads queued behind each other. Now a read does its work in a
read-only transaction (in SQLite's WAL mode readers never wait for the
writer), then hands its entry to :meth:`AuditGroupCommit.record`, which
returns only once the entry is committed.

How entries are grouped (the leader/follower scheme of database group
commit): each caller queues its entry and then waits for the *writer* lock.
Whoever holds it takes every entry queued so far — its own and those of the
callers that arrived while the previous group was being written — and writes
them in one transaction: the chain head is read and locked once, the entries
are chained in queue order and inserted together, the head is updated once,
and the transaction commits. Only then are the callers of that group woken.
A caller whose entry a previous leader already wrote finds it done and leaves.

What does not change: entries stay hash-chained exactly as
:meth:`AuditTrail.append` chains them (``verify-audit`` cannot tell the
difference), and nobody answers before their entry is durable: if the group's
transaction fails, every caller in the group gets the error and its request
fails. With one caller at a time a group is one entry, as before.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from cpms_hub.domain import AuditEntry

from .audit import AuditTrail, entry_fields
from .database import write_connection

__all__ = ["AuditGroupCommit"]


@dataclass(eq=False, slots=True)
class _Queued:
    fields: dict
    entry: AuditEntry | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


class AuditGroupCommit:
    """Appends entries to ``trail`` in shared transactions; see the module docstring."""

    def __init__(self, trail: AuditTrail, sessions: sessionmaker[Session]) -> None:
        self.trail = trail
        self.sessions = sessions
        self._queue: list[_Queued] = []
        self._queue_lock = threading.Lock()
        self._writer = threading.Lock()
        #: size of each group written (the last few hundred), for benchmarks and tests
        self.group_sizes: list[int] = []

    def record(self, **entry: Any) -> AuditEntry:
        """Append one entry (the keywords of :func:`~.audit.entry_fields`); returns once it
        is committed (raises if it was not)."""
        mine = _Queued(entry_fields(**entry))
        with self._queue_lock:
            self._queue.append(mine)
        with self._writer:
            if not mine.done:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._write(group)
        if mine.error is not None:
            raise mine.error
        assert mine.entry is not None
        return mine.entry

    def _write(self, group: list[_Queued]) -> None:
        try:
            with write_connection(self.sessions) as conn:
                entries = self.trail.append_many(conn, [q.fields for q in group])
        except BaseException as exc:  # every caller of the group learns it failed
            for q in group:
                q.error, q.done = exc, True
            return
        for q, entry in zip(group, entries, strict=True):
            q.entry, q.done = entry, True
        self.group_sizes.append(len(group))
        if len(self.group_sizes) > 500:
            del self.group_sizes[:250]
