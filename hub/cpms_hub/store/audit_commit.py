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

Callers on an event loop (:meth:`AuditGroupCommit.record_async`) must not
block it on the writer lock: they queue their entry with a future and await
it. One writer thread of this object's own drains the queue group by group
(the same transactions, shared with the blocking callers: whoever writes a
group wakes everyone in it) and resolves the futures of each group with one
wake-up per event loop. A route that serves a read on the loop thus never
waits for a thread-pool worker, and, under load, the reads answered while a
group commits form the next group.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
    #: set for :meth:`AuditGroupCommit.record_async` callers: resolved by the writer
    future: asyncio.Future | None = None


class AuditGroupCommit:
    """Appends entries to ``trail`` in shared transactions; see the module docstring."""

    def __init__(
        self, trail: AuditTrail, sessions: sessionmaker[Session], *, window: float = 0.008
    ) -> None:
        self.trail = trail
        #: under sustained load, the writer thread starts a group at most this often (s)
        self.window = window
        self.sessions = sessions
        self._queue: list[_Queued] = []
        self._queue_lock = threading.Lock()
        self._writer = threading.Lock()
        # one thread drains the entries queued from event loops (see record_async)
        self._drainer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cpms-audit")
        self._draining = False
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

    async def record_async(self, **entry: Any) -> AuditEntry:
        """:meth:`record` for a caller on an event loop: awaits the commit without blocking
        the loop (the entry is written by this object's writer thread)."""
        loop = asyncio.get_running_loop()
        mine = _Queued(entry_fields(**entry), future=loop.create_future())
        with self._queue_lock:
            self._queue.append(mine)
            start, self._draining = not self._draining, True
        if start:
            self._drainer.submit(self._drain)
        await mine.future
        if mine.error is not None:
            raise mine.error
        assert mine.entry is not None
        return mine.entry

    def _drain(self) -> None:
        """Write groups until the queue is empty (the writer thread of ``record_async``).

        Entries from one event loop arrive one at a time, as fast as the loop
        answers requests, which is slower than a group is written: left alone,
        every group would be one entry and each read would pay for a whole
        transaction. So, like PostgreSQL's ``commit_delay``, the writer waits
        when load is sustained (entries arrived while the last group was being
        written) until ``window`` has passed since that group began, and the
        reads answered meanwhile join the next group. A read arriving at a quiet
        service is written at once.
        """
        busy_since = None
        while True:
            if busy_since is not None:
                pause = busy_since + self.window - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            with self._writer:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                    if not group:
                        self._draining = False
                        return
                began = time.monotonic()
                self._write(group)
                with self._queue_lock:
                    busy_since = began if self._queue else None

    def close(self) -> None:
        """Stop the writer thread once the queued entries are written."""
        self._drainer.shutdown(wait=True)

    def _write(self, group: list[_Queued]) -> None:
        try:
            with write_connection(self.sessions) as conn:
                entries = self.trail.append_many(conn, [q.fields for q in group])
        except BaseException as exc:  # every caller of the group learns it failed
            for q in group:
                q.error, q.done = exc, True
        else:
            for q, entry in zip(group, entries, strict=True):
                q.entry, q.done = entry, True
            self.group_sizes.append(len(group))
            if len(self.group_sizes) > 500:
                del self.group_sizes[:250]
        _wake([q.future for q in group if q.future is not None])


def _wake(futures: list[asyncio.Future]) -> None:
    """Resolve ``futures`` from the writer thread: one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
    for f in futures:
        by_loop.setdefault(f.get_loop(), []).append(f)
    for loop, waiting in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, waiting)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass


def _resolve(futures: list[asyncio.Future]) -> None:
    for f in futures:
        if not f.done():  # a cancelled request no longer waits; its entry is written anyway
            f.set_result(None)
