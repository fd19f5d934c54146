"""Single-statement reads on SQLite straight through the ``sqlite3`` driver.

The store reads two rows on every request: the caller's account, then the
case. Each took a pooled SQLAlchemy connection (check-out, ``BEGIN``,
``ROLLBACK``, check-in) and Core's execution machinery around a statement that
SQLite itself answers in about a microsecond: some 80 µs of the interpreter's
time per statement, about half of a read's cost in the store process.

Here a statement runs on a ``sqlite3`` connection of this thread's own:

* one connection per thread (and per process: a connection is never carried
  across ``fork``), opened on the engine's database file with the pragmas of
  :func:`~.database.make_engine` (WAL, foreign keys, busy timeout) and
  ``PRAGMA query_only=ON``, so it can never write;
* in autocommit mode (``isolation_level=None``): SQLite runs a lone ``SELECT``
  in its own read transaction, one consistent snapshot begun when the
  statement starts and ended when it is done. Nothing is left open between
  statements, so the next read sees whatever another connection or process
  has committed since (a destroyed key, a disabled account), and a reader
  never holds the WAL back from being checkpointed;
* the Core ``select()`` is compiled once, for the engine's SQLite dialect
  (:class:`~.driver_statements.DriverStatement`), and its values pass through
  the very processors SQLAlchemy would apply, so callers get what the Core
  path gives them; rows are named tuples, read by attribute like Core's ``Row``.

Connections are closed when the engine is disposed (``State.close``), and one
a finished thread leaves behind is closed with the thread's local storage.
A database in memory has no file to open a second connection on: there
:func:`reader_for` answers None and callers keep the pooled Core path, as on
PostgreSQL.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Select, event
from sqlalchemy.orm import Session, sessionmaker

from .database import read_connection
from .driver_statements import DriverStatement

__all__ = ["Rows", "SqliteReader", "read_statements", "reader_for"]

#: the pragmas of ``make_engine``'s connections (journal_mode is the file's, kept by WAL)
_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
    "PRAGMA query_only=ON",
)


class _Held:
    """One thread's connection; closed when the thread's local storage drops it."""

    __slots__ = ("conn", "pid", "generation", "__weakref__")

    def __init__(self, conn: sqlite3.Connection, generation: int) -> None:
        self.conn = conn
        self.pid = os.getpid()
        self.generation = generation

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass

    def __del__(self) -> None:
        # never in a forked child: closing there could disturb the parent's locks on the file
        if self.pid == os.getpid():
            self.close()


#: connections opened before a fork, kept referenced in the child so they are never closed there
_INHERITED: list[_Held] = []


class Rows(list):
    """A statement's rows, read the way callers read a Core result."""

    def all(self) -> list[tuple]:
        return list(self)

    def one_or_none(self) -> tuple | None:
        if len(self) > 1:
            raise ValueError("more than one row where at most one was expected")
        return self[0] if self else None


class SqliteReader:
    """Runs Core ``select()`` statements on this thread's read-only ``sqlite3`` connection."""

    def __init__(self, path: str, dialect: Any) -> None:  # noqa: ANN401 - a SQLAlchemy Dialect
        self.path = path
        self.dialect = dialect
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[_Held] = weakref.WeakSet()
        self._generation = 0
        self._compiled: dict[int, tuple[Select, DriverStatement]] = {}

    def execute(self, stmt: Select, params: Mapping[str, Any]) -> Rows:
        """The rows ``stmt`` selects with ``params``, values as Core would give them;
        read like a Core result (``.all()``, ``.one_or_none()``)."""
        entry = self._compiled.get(id(stmt))
        if entry is None or entry[0] is not stmt:
            entry = (stmt, DriverStatement(stmt, self.dialect))
            self._compiled[id(stmt)] = entry
        compiled = entry[1]
        raw = self._connection().execute(compiled.sql, compiled.bind(params)).fetchall()
        return Rows(compiled.rows(raw))

    def all(self, stmt: Select, params: Mapping[str, Any]) -> list[tuple]:
        """Every row ``stmt`` selects with ``params``."""
        return self.execute(stmt, params).all()

    def one_or_none(self, stmt: Select, params: Mapping[str, Any]) -> tuple | None:
        return self.execute(stmt, params).one_or_none()

    def _connection(self) -> sqlite3.Connection:
        held = getattr(self._local, "held", None)
        if held is not None and held.generation == self._generation:
            if held.pid == os.getpid():
                return held.conn
            _INHERITED.append(held)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            for pragma in _PRAGMAS:
                conn.execute(pragma)
        except BaseException:
            conn.close()
            raise
        with self._lock:
            held = _Held(conn, self._generation)
            self._open.add(held)
        self._local.held = held
        return conn

    def close(self) -> None:
        """Close every thread's connection; a later read opens a new one."""
        with self._lock:
            self._generation += 1
            held = list(self._open)
            self._open = weakref.WeakSet()
        pid = os.getpid()
        for h in held:
            if h.pid == pid:
                h.close()


#: one reader per SQLite engine with a database file
_READERS: weakref.WeakKeyDictionary[Engine, SqliteReader] = weakref.WeakKeyDictionary()
_READERS_LOCK = threading.Lock()


def reader_for(engine: Engine) -> SqliteReader | None:
    """The reader of ``engine``'s database, or None (not SQLite, or no file to share)."""
    reader = _READERS.get(engine)
    if reader is not None:
        return reader
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return None
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:") or url.query:
        return None
    with _READERS_LOCK:
        reader = _READERS.get(engine)
        if reader is None:
            reader = SqliteReader(os.path.abspath(path), engine.dialect)
            event.listen(engine, "engine_disposed", lambda _engine: reader.close())
            _READERS[engine] = reader
    return reader


@contextmanager
def read_statements(sessions: sessionmaker[Session]) -> Iterator[SqliteReader | Connection]:
    """Where single-statement reads run: the engine's :class:`SqliteReader` on a SQLite
    file, else a read-only Core connection (PostgreSQL, SQLite in memory). Either
    answers ``execute(stmt, params).all()`` and ``.one_or_none()`` alike."""
    reader = reader_for(sessions.kw["bind"])
    if reader is not None:
        yield reader
        return
    with read_connection(sessions) as conn:
        yield conn
