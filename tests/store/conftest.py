"""Fixtures for the case store tests: fresh deployments on SQLite and on real PostgreSQL 15.

``postgres_cluster`` starts one throw-away PostgreSQL cluster per session (only when a
PostgreSQL test is selected); ``backend`` hands each test a freshly initialised
:class:`~cpms_hub.state.State` on its own SQLite file or its own PostgreSQL database, so
tests never see each other's rows, keys or audit entries.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from cpms_hub.settings import CpmsSettings
from cpms_hub.state import State, init_state
from tests.deployment import state_settings

#: where Debian/Ubuntu put the server binaries; PATH is the fallback (CI images differ)
PG_BINDIR = Path("/usr/lib/postgresql/15/bin")
PG_SUPERUSER = "postgres"
# initdb and postgres refuse to run as root, so as root the cluster belongs to `postgres`
AS_ROOT = os.geteuid() == 0


def _pg_bindir() -> Path | None:
    if (PG_BINDIR / "initdb").exists() and (PG_BINDIR / "pg_ctl").exists():
        return PG_BINDIR
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    return None


def as_cluster_owner(cmd: list[str]) -> list[str]:
    """``cmd`` as the account that owns the cluster (``runuser`` when we are root)."""
    return ["runuser", "-u", PG_SUPERUSER, "--", *cmd] if AS_ROOT else cmd


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresCluster:
    """A running throw-away cluster: trust authentication, TCP on 127.0.0.1 only."""

    bindir: Path
    datadir: Path
    port: int
    user: str = PG_SUPERUSER

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname=database, autocommit=True
        )

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        # FORCE ends connections a failed test may have leaked, so the drop cannot hang
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def checkpoint(self) -> None:
        """Write every dirty buffer to the data files (so raw-file scans see all rows)."""
        with self.connect() as conn:
            conn.execute("CHECKPOINT")

    def run(self, tool: str, *args: str) -> bytes:
        """Run a PostgreSQL client tool against this cluster; its stdout."""
        cmd = as_cluster_owner(
            [
                str(self.bindir / tool),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                *args,
            ]
        )
        done = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{tool} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout

    def dump(self, database: str) -> bytes:
        return self.run("pg_dump", "--no-password", database)


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace") + done.stdout.decode(errors="replace")
        if log is not None and log.exists():
            detail += "\n--- server log ---\n" + log.read_text(errors="replace")
        raise RuntimeError(f"{what} failed ({done.returncode}): {detail}")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found in "
            f"{PG_BINDIR} or on PATH; install postgresql-15 to run the PostgreSQL tests"
        )
    if AS_ROOT:
        try:
            pwd.getpwnam(PG_SUPERUSER)
        except KeyError:
            pytest.skip("running as root but there is no 'postgres' account to own the cluster")
    datadir = Path(tempfile.mkdtemp(prefix="cpms-pg-"))
    if AS_ROOT:
        shutil.chown(datadir, user=PG_SUPERUSER)
    datadir.chmod(0o700)
    log = datadir / "log"
    port = _free_port()
    started = False
    try:
        # C locale and --no-sync keep initdb under a second; -U makes the superuser
        # `postgres` whoever runs it, so URLs look the same as root and as a normal user
        _run(
            as_cluster_owner(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(datadir),
                    "-A",
                    "trust",
                    "-U",
                    PG_SUPERUSER,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ]
            ),
            "initdb",
        )
        # pg_ctl hands -o to a shell, hence the quoting. fsync off: durability is
        # irrelevant here and CHECKPOINT (used by the raw-file scan) still writes every
        # page; a small WAL keeps that scan fast
        options = (
            f"-c listen_addresses=127.0.0.1 -k {shlex.quote(str(datadir))} -p {port} -c fsync=off "
            "-c max_wal_size=64MB -c min_wal_size=32MB -c max_connections=200"
        )
        _run(
            as_cluster_owner(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(datadir),
                    "-o",
                    options,
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    "30",
                    "start",
                ]
            ),
            "pg_ctl start",
            log,
        )
        started = True
        yield PostgresCluster(bindir=bindir, datadir=datadir, port=port)
    finally:
        if started:
            # stops the postmaster named in this data folder's PID file, nothing else
            subprocess.run(
                as_cluster_owner(
                    [str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "stop"]
                ),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(datadir, ignore_errors=True)


@contextmanager
def fresh_database(kind: str, request: pytest.FixtureRequest, folder: Path) -> Iterator[str]:
    """The URL of a new, empty database of ``kind``; a PostgreSQL one is dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'cpms.sqlite'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = cluster.create_database()
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def settings_for(folder: Path, db_url: str) -> CpmsSettings:
    return state_settings(folder, db_url)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[State]:
    """A freshly initialised deployment (keys, schema, blob folder) on one backend."""
    folder = tmp_path / "state"
    with fresh_database(request.param, request, folder) as db_url:
        state = init_state(settings_for(folder, db_url))
        try:
            yield state
        finally:
            state.close()


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (no schema) on one backend."""
    folder = tmp_path / "db"
    folder.mkdir()
    with fresh_database(request.param, request, folder) as db_url:
        yield db_url
