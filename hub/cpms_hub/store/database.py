"""Engines and sessions for the case store, on SQLite or PostgreSQL.

SQLite (the embedded default) runs in WAL mode with foreign keys on. Write
transactions start ``BEGIN IMMEDIATE`` (the store writes an audit entry on
every request, so taking the write lock up front avoids deadlocking upgrades
from read to write) and queue on a lock in this process first: SQLite's own
busy handler sleeps 1–100 ms between retries in no order, which starves some
requests for seconds under load, while a lock hands the turn on at once. The
same holds between processes (the store service's workers, ``cpms-admin``, the
hub's authenticator): after the lock of its own process, a writer takes an
exclusive ``flock`` on a file beside the database (``<database>-writer.lock``),
on which the kernel wakes the next waiter as soon as it is released.
Read-only transactions (``session_scope(..., write=False)``) take neither:
in WAL mode readers never wait for the writer. PostgreSQL uses psycopg 3. The schema
is created and upgraded by Alembic (:func:`migrate`), never by ``create_all``
at run time.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "make_engine",
    "make_session_factory",
    "migrate",
    "session_scope",
    "read_connection",
    "write_connection",
    "is_sqlite",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class _WriterLock:
    """One SQLite writer at a time: first among this process's threads, then among processes.

    Re-entrant like the :class:`threading.RLock` it wraps; the ``flock`` is taken
    when the outermost holder enters and released when it leaves. Without a
    lock file (a database in memory, or a file we may not create) it is the
    thread lock alone, and SQLite's busy handler orders the processes.
    """

    def __init__(self, lock_file: Path | None) -> None:
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        if lock_file is not None:
            try:
                self._fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                self._fd = None

    def acquire(self) -> None:
        self._threads.acquire()
        self._depth += 1
        if self._depth == 1 and self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._depth -= 1
                self._threads.release()
                raise

    def release(self) -> None:
        if self._depth == 1 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._depth -= 1
        self._threads.release()

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


#: one write transaction at a time per SQLite engine (see :class:`_WriterLock`)
_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, _WriterLock] = weakref.WeakKeyDictionary()
#: set while a read-only transaction begins on this thread
_READ_ONLY = threading.local()


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files are created 0600 in an existing folder."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db_path = parsed.database
        if db_path and db_path != ":memory:":
            path = Path(db_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                # create it private before SQLite does, so it never exists world-readable
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=40,
            max_overflow=10,
            # the most recently used connection first: SQLite empties a connection's page
            # cache whenever another connection has committed since its last transaction,
            # and round-robin over 40 connections meant nearly every read began cold
            pool_use_lifo=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            # let SQLAlchemy, not the driver, open transactions (see "begin" below)
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # noqa: ANN001
            conn.exec_driver_sql("BEGIN" if getattr(_READ_ONLY, "on", False) else "BEGIN IMMEDIATE")

        lock_file = None
        if db_path and db_path != ":memory:":
            lock_file = Path(db_path).with_name(Path(db_path).name + "-writer.lock")
        _WRITE_LOCKS[engine] = _WriterLock(lock_file)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # plain postgresql:// would pick psycopg2, which we do not ship
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_size=20, max_overflow=20, pool_pre_ping=True)


#: key of a dict in ``Session.info`` that lives as long as the session's transaction
#: (emptied whenever one ends): what was read under that transaction's snapshot
TRANSACTION_MEMO = "cpms_transaction_memo"


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(engine, expire_on_commit=False)

    @event.listens_for(factory, "after_transaction_end")
    def _forget(session: Session, _transaction) -> None:  # noqa: ANN001
        session.info.pop(TRANSACTION_MEMO, None)

    return factory


@contextmanager
def session_scope(factory: sessionmaker[Session], *, write: bool = True) -> Iterator[Session]:
    """One transaction: committed if the block succeeds, rolled back on any error.

    ``write=False`` promises the block only reads: on SQLite it then neither
    queues behind writers nor takes the database's write lock.
    """
    if not write:
        _READ_ONLY.on = True
        session = factory()
        try:
            session.connection()  # begin now, while the flag is set
        finally:
            _READ_ONLY.on = False
        try:
            yield session
        finally:
            session.rollback()
            session.close()
        return
    lock = _WRITE_LOCKS.get(factory.kw.get("bind"))
    if lock is not None:
        lock.acquire()
    try:
        session = factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
    finally:
        if lock is not None:
            lock.release()


@contextmanager
def read_connection(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A read-only transaction on a bare Core connection, for the hottest read paths.

    Like ``session_scope(factory, write=False)`` (no write lock, rolled back at
    the end) without a :class:`Session`: callers run Core statements only.
    """
    engine = factory.kw["bind"]
    conn = engine.connect()
    try:
        _READ_ONLY.on = True
        try:
            conn.begin()  # begin now, while the flag is set
        finally:
            _READ_ONLY.on = False
        yield conn
    finally:
        conn.rollback()
        conn.close()


@contextmanager
def write_connection(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A write transaction on a bare Core connection: committed if the block succeeds.

    The same lock and ``BEGIN IMMEDIATE`` as ``session_scope(factory)``, without
    a :class:`Session`, for short Core-only writes (the audit group commit).
    """
    engine = factory.kw["bind"]
    lock = _WRITE_LOCKS.get(engine)
    if lock is not None:
        lock.acquire()
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        if lock is not None:
            lock.release()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` with Alembic."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection_engine"] = engine
    command.upgrade(cfg, revision)
