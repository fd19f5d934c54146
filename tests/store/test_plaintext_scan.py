"""No patient data or secret reaches the disk in plaintext, on SQLite or PostgreSQL.

Cases, a pseudonym, attached files and an enrolled account are created with distinctive
marker strings; then every byte the deployment put on disk is searched for them: the
SQLite database with its WAL and shared-memory files (before and after a checkpoint), or
for PostgreSQL a ``pg_dump`` of the database and every file of the cluster's data
directory after a CHECKPOINT; and the whole state folder with the blob files. Positive
controls (an unencrypted column, a planted file) prove that the scan does find what is
there, so a broken scan cannot pass.
"""

from __future__ import annotations

import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import pyotp
import pytest
from sqlalchemy.engine import make_url

from cpms_hub.domain import AccountRequest, CaseDraft, Role
from cpms_hub.policy import Decision
from cpms_hub.state import State
from cpms_hub.store import AuditContext

CTX = AuditContext(actor="dr-zebra", client="10.0.0.9")


def allow(_ref: object) -> Decision:
    return Decision(True, ("test",))


def hits(blobs: dict[str, bytes], needles: list[str]) -> list[tuple[str, str]]:
    """(needle, where) for every needle found, as UTF-8 and as UTF-16 (SQLite may use it)."""
    found = []
    for needle in needles:
        forms = (needle.encode("utf-8"), needle.encode("utf-16-le"))
        for where, data in blobs.items():
            if any(form in data for form in forms):
                found.append((needle, where))
    return found


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (recursively), as bytes."""
    files = {}
    for path in sorted(root.rglob("*")):
        try:
            if path.is_file():
                files[str(path)] = path.read_bytes()
        except (FileNotFoundError, PermissionError):
            # PostgreSQL removes temporary files while we walk; what is gone was not there
            continue
    return files


def populate(state: State) -> tuple[list[str], str]:
    """Cases, files and an account full of markers; (markers, plaintext control value)."""
    tag = uuid.uuid4().hex
    markers: list[str] = []

    def marker(kind: str) -> str:
        value = f"ZEBRA-{kind}-{tag}"
        markers.append(value)
        return value

    hospital = f"CONTROL-HOSPITAL-{tag}"  # stored unencrypted on purpose (not patient data)
    for i in range(5):
        case = state.cases.create_case(
            CaseDraft(
                title=marker(f"TITLE{i}"),
                clinical_summary=f"Patient history: {marker(f'SUMMARY{i}')} " * 3,
            ),
            owner="dr-zebra",
            hospital=hospital,
            network="ERN-TEST",
            ctx=CTX,
            pseudonym=marker(f"PSEUDONYM{i}"),
        )
        content_marker = marker(f"CONTENT{i}")
        content = (b"%PDF-1.7 " + content_marker.encode() + b"\n" + bytes(range(256))) * 200
        state.cases.add_file(
            case.id,
            iter([content[:30_000], content[30_000:]]),
            name=f"{marker(f'FILENAME{i}')}.pdf",
            media_type="application/pdf",
            max_size=10**6,
            authorize=allow,
            ctx=CTX,
        )
        if i == 0:
            # the superseded title must not linger either
            state.cases.update_case(case.id, title=marker("NEWTITLE"), authorize=allow, ctx=CTX)
        state.cases.read_case(case.id, authorize=allow, ctx=CTX)
    secret = pyotp.random_base32()
    password = marker("PASSWORD")
    state.accounts.create_active(
        AccountRequest(
            name="dr-zebra",
            email="zebra@example.org",
            full_name="Dr Zebra",
            hospital=hospital,
            network="ERN-TEST",
            roles=frozenset({Role.CLINICIAN}),
        ),
        password,
        by="cpms-admin",
        totp_secret=secret,
    )
    markers.append(secret)
    return markers, hospital


def test_nothing_in_plaintext_on_disk(backend: State, request: pytest.FixtureRequest) -> None:
    markers, control = populate(backend)
    state_dir = Path(backend.settings.state_dir)
    blob_dir = Path(backend.settings.blob_dir)

    # the blob folder alone: encrypted segments only, and the scan does see planted text
    blobs = read_tree(blob_dir)
    assert len(blobs) == 5
    assert hits(blobs, markers) == []
    planted = blob_dir / "planted.txt"
    planted.write_text(f"control {markers[0]}\n")
    assert hits(read_tree(blob_dir), markers[:1]) == [(markers[0], str(planted))]
    planted.unlink()

    if backend.engine.dialect.name == "sqlite":
        db_file = Path(make_url(backend.settings.db_url).database)
        companions = [db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm")]

        # before a checkpoint most rows live only in the write-ahead log
        tree = read_tree(state_dir)
        assert str(companions[1]) in tree and len(tree[str(companions[1])]) > 0
        assert hits(tree, markers) == []
        assert hits({k: tree[k] for k in map(str, companions) if k in tree}, [control])

        with closing(sqlite3.connect(db_file, isolation_level=None)) as raw:
            busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        tree = read_tree(state_dir)
        assert tree[str(companions[1])] == b""  # all pages are in the main file now
        assert hits(tree, markers) == []
        assert hits({str(db_file): tree[str(db_file)]}, [control]) == [(control, str(db_file))]
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        database = make_url(backend.settings.db_url).database
        dump = cluster.dump(database)
        assert b"CREATE TABLE public.cases" in dump
        assert hits({"pg_dump": dump}, markers) == []
        assert hits({"pg_dump": dump}, [control]) == [(control, "pg_dump")]

        cluster.checkpoint()
        raw = read_tree(cluster.datadir)
        in_base = {k: v for k, v in raw.items() if Path(k).is_relative_to(cluster.datadir / "base")}
        assert len(in_base) > 100  # every database's tables and indexes
        assert hits(raw, markers) == []
        # the control is in a heap file of our database, found by the same scan
        assert any(
            where.startswith(str(cluster.datadir / "base")) for _, where in hits(in_base, [control])
        )

        assert hits(read_tree(state_dir), markers) == []
