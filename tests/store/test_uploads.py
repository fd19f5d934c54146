"""Chunked, resumable uploads on SQLite and PostgreSQL, through the real UploadStore.

Every test runs against a freshly initialised deployment (``conftest.backend``) and drives
:class:`~cpms_hub.store.uploads.UploadStore` as the service does, with small chunks
(4 segments of 16 KiB) so that many chunk boundaries fit in a few hundred KiB. Failures
are real: chunk iterators that raise half-way (a client that went away), a second State
opened on the same folder (a service restart), direct SQL and file edits (an attacker or
an operator with access to the database or the blob folder).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from cpms_hub.crypto import HEADER_SIZE, MIN_SEGMENT_SIZE
from cpms_hub.crypto.segmented import SegmentedWriter, WriterCheckpoint
from cpms_hub.domain import (
    CaseDraft,
    ConflictError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from cpms_hub.policy import Decision
from cpms_hub.state import State, open_state
from cpms_hub.store import AuditContext
from cpms_hub.store.keys import case_key_id
from cpms_hub.store.schema import BlobRow, UploadRow
from cpms_hub.store.uploads import UploadBusyError, UploadStore

CTX = AuditContext(actor="alice", client="10.0.0.7")
SEG = MIN_SEGMENT_SIZE
CHUNK = 4 * SEG


def allow(_ref: object) -> Decision:
    return Decision(True, ("test",))


def deny(_ref: object) -> Decision:
    return Decision(False, ("not a member of the case",))


def store_of(state: State, **kwargs) -> UploadStore:
    return UploadStore(
        state.sessions,
        state.keys,
        state.cases.blobs,
        state.audit,
        **{"chunk_size": CHUNK, "segment_size": SEG, **kwargs},
    )


@pytest.fixture
def uploads(backend: State) -> UploadStore:
    return store_of(backend)


def new_case(state: State) -> str:
    return state.cases.create_case(
        CaseDraft(title="Slides", clinical_summary="Whole-slide images."),
        owner="alice",
        hospital="Hospital A",
        network="ERN-TEST",
        ctx=CTX,
    ).id


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def pieces(data: bytes, sizes: tuple[int, ...] = (1, 777, 5000, SEG, 3)) -> Iterator[bytes]:
    """``data`` in irregular pieces, as a request body arrives."""
    pos = i = 0
    while pos < len(data):
        yield data[pos : pos + sizes[i % len(sizes)]]
        pos += sizes[i % len(sizes)]
        i += 1


def put(uploads: UploadStore, case_id: str, upload_id: str, offset: int, data: bytes):
    return uploads.append_chunk(case_id, upload_id, offset, pieces(data), authorize=allow, ctx=CTX)


def send_all(
    uploads: UploadStore, case_id: str, upload_id: str, data: bytes, start: int = 0
) -> None:
    for offset in range(start, len(data), CHUNK):
        status = put(uploads, case_id, upload_id, offset, data[offset : offset + CHUNK])
        assert status.received == min(offset + CHUNK, len(data))


def begin(uploads: UploadStore, case_id: str, size: int, name: str = "slide-1.svs"):
    return uploads.create(
        case_id, name=name, size=size, media_type="image/tiff", authorize=allow, ctx=CTX
    )


def read_back(state: State, case_id: str, file_id: str) -> bytes:
    meta, reader = state.cases.open_file(case_id, file_id, authorize=allow, ctx=CTX)
    with reader:
        return reader.read_all()


def files_on_disk(state: State) -> list[Path]:
    return sorted(p for p in Path(state.settings.blob_dir).rglob("*") if p.is_file())


def entries(state: State, case_id: str) -> list:
    with state.sessions() as s:
        return list(reversed(state.audit.entries(s, case_id=case_id, limit=10_000)))


def upload_row(state: State, upload_id: str) -> UploadRow | None:
    with state.sessions() as s:
        return s.get(UploadRow, upload_id)


def blob_count(state: State) -> int:
    with state.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(BlobRow)).scalar_one()


def interrupted(data: bytes, after: int) -> Iterator[bytes]:
    """A request body whose client goes away after ``after`` bytes."""
    yield from pieces(data[:after])
    raise ConnectionResetError("client went away mid-chunk")


# -- the normal path -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [1, SEG - 1, SEG, SEG + 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + SEG + 5]
)
def test_upload_round_trip(backend: State, uploads: UploadStore, size: int) -> None:
    case_id = new_case(backend)
    data = payload(size)
    status = begin(uploads, case_id, size)
    assert (status.received, status.size, status.status) == (0, size, "open")
    assert status.chunk_size == CHUNK
    partial = uploads.partial_dir / f"{status.id}.part"
    assert partial.stat().st_mode & 0o777 == 0o600
    assert uploads.partial_dir.stat().st_mode & 0o777 == 0o700

    send_all(uploads, case_id, status.id, data)
    assert uploads.status(case_id, status.id, authorize=allow, ctx=CTX).received == size
    f = uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)

    assert (f.id, f.case_id, f.name, f.size) == (status.id, case_id, "slide-1.svs", size)
    assert f.media_type == "image/tiff" and f.created_by == "alice"
    assert f.sha256 == hashlib.sha256(data).hexdigest()
    assert read_back(backend, case_id, f.id) == data
    listed = backend.cases.list_files(case_id, authorize=allow, ctx=CTX)
    assert [x.id for x in listed] == [f.id] and listed[0].sha256 == f.sha256
    # the partial is gone: the blob is the only file, under its final name
    assert [p.name for p in files_on_disk(backend)] == [f.id]
    done = uploads.status(case_id, status.id, authorize=allow, ctx=CTX)
    assert done.status == "complete" and upload_row(backend, f.id).tail_enc is None
    # three entries for the whole upload, however many chunks it took
    actions = [e.action for e in entries(backend, case_id)]
    assert [a for a in actions if a.startswith("upload.")] == ["upload.create", "upload.complete"]
    assert backend.verify_audit().ok


def test_complete_twice_returns_the_same_file(backend: State, uploads: UploadStore) -> None:
    case_id = new_case(backend)
    data = payload(CHUNK + 10)
    status = begin(uploads, case_id, len(data))
    send_all(uploads, case_id, status.id, data)
    first = uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    again = uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert (again.id, again.name, again.sha256, again.size) == (
        first.id,
        first.name,
        first.sha256,
        first.size,
    )
    assert blob_count(backend) == 1
    assert [e.action for e in entries(backend, case_id)].count("upload.complete") == 1
    with pytest.raises(ConflictError):
        put(uploads, case_id, status.id, len(data), b"x")
    with pytest.raises(ConflictError):
        uploads.abort(case_id, status.id, authorize=allow, ctx=CTX)


# -- interruptions and restarts ----------------------------------------------------------


def test_interrupted_chunk_keeps_the_previous_offset_and_resumes(
    backend: State, uploads: UploadStore
) -> None:
    case_id = new_case(backend)
    data = payload(3 * CHUNK + 99)
    status = begin(uploads, case_id, len(data))
    put(uploads, case_id, status.id, 0, data[:CHUNK])
    partial = uploads.partial_dir / f"{status.id}.part"
    committed = partial.read_bytes()

    with pytest.raises(ConnectionResetError):
        uploads.append_chunk(
            case_id,
            status.id,
            CHUNK,
            interrupted(data[CHUNK : 2 * CHUNK], CHUNK // 2 + 123),
            authorize=allow,
            ctx=CTX,
        )
    assert uploads.status(case_id, status.id, authorize=allow, ctx=CTX).received == CHUNK
    # nothing of the cut-short request reached the file (it is sealed only when complete)
    assert partial.read_bytes() == committed

    # the client resumes at the offset the store reports
    with pytest.raises(ConflictError) as wrong:
        put(uploads, case_id, status.id, 2 * CHUNK, data[2 * CHUNK : 3 * CHUNK])
    assert f"offset: expected {CHUNK}" in wrong.value.reasons
    send_all(uploads, case_id, status.id, data, start=CHUNK)
    f = uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert read_back(backend, case_id, f.id) == data
    assert f.sha256 == hashlib.sha256(data).hexdigest()


def test_other_data_after_a_crash_between_write_and_commit_is_refused(
    backend: State, uploads: UploadStore
) -> None:
    # A server that sealed and wrote chunk 2 but died before recording it leaves stale
    # segments past the checkpoint. Resending the same bytes must work; other bytes would
    # be sealed under the same nonces, so they are refused.
    case_id = new_case(backend)
    data = payload(2 * CHUNK)
    status = begin(uploads, case_id, len(data))
    put(uploads, case_id, status.id, 0, data[:CHUNK])
    partial = uploads.partial_dir / f"{status.id}.part"
    with backend.sessions() as s:
        data_key = backend.keys.get(s, case_key_id(case_id))
    checkpoint = WriterCheckpoint(SEG, CHUNK // SEG - 1, data[CHUNK - SEG : CHUNK])
    with partial.open("r+b") as fh:
        crashed = SegmentedWriter.resume(data_key, fh, blob_id=status.id, checkpoint=checkpoint)
        crashed.write(data[CHUNK:])
    assert partial.stat().st_size > checkpoint.stored_size

    other = bytearray(data[CHUNK:])
    other[100] ^= 0xFF
    with pytest.raises(ConflictError) as refused:
        put(uploads, case_id, status.id, CHUNK, bytes(other))
    assert refused.value.reasons[0].startswith("chunk: differs")
    assert uploads.status(case_id, status.id, authorize=allow, ctx=CTX).received == CHUNK
    put(uploads, case_id, status.id, CHUNK, data[CHUNK:])
    f = uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert read_back(backend, case_id, f.id) == data


def test_tail_survives_a_restart(backend: State) -> None:
    case_id = new_case(backend)
    data = payload(5 * CHUNK + 321)
    uploads = store_of(backend)
    status = begin(uploads, case_id, len(data))
    send_all(uploads, case_id, status.id, data[: 2 * CHUNK])
    assert upload_row(backend, status.id).tail_enc is not None  # one segment, encrypted

    # a new service process: fresh State, fresh UploadStore, nothing kept in memory
    restarted = open_state(backend.settings)
    try:
        again = store_of(restarted)
        assert again.status(case_id, status.id, authorize=allow, ctx=CTX).received == 2 * CHUNK
        send_all(again, case_id, status.id, data, start=2 * CHUNK)
        f = again.complete(case_id, status.id, authorize=allow, ctx=CTX)
        assert read_back(restarted, case_id, f.id) == data
    finally:
        restarted.close()


def test_crash_between_move_and_commit_is_repaired(backend: State, uploads: UploadStore) -> None:
    # what a process killed right after moving the blob into place leaves behind
    case_id = new_case(backend)
    data = payload(2 * CHUNK + 7)
    status = begin(uploads, case_id, len(data))
    send_all(uploads, case_id, status.id, data)
    final = uploads._final(status.id)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(uploads.partial_dir / f"{status.id}.part", final)
    f = uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert read_back(backend, case_id, f.id) == data


def test_failed_commit_moves_the_blob_back_and_complete_can_be_retried(
    backend: State, uploads: UploadStore
) -> None:
    case_id = new_case(backend)
    data = payload(CHUNK + 1)
    status = begin(uploads, case_id, len(data))
    send_all(uploads, case_id, status.id, data)
    # an operator's stray row with the same id makes the BlobRow insert fail
    created_at = upload_row(backend, status.id).created_at
    with backend.engine.begin() as conn:
        conn.execute(
            BlobRow.__table__.insert().values(
                id=status.id,
                case_id=case_id,
                name_enc=b"x",
                media_type="x/x",
                size=1,
                stored_size=1,
                segment_size=SEG,
                sha256_enc=b"x",
                created_by="op",
                created_at=created_at,
            )
        )
    with pytest.raises(Exception, match="(?i)unique|duplicate|integrity"):
        uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert (uploads.partial_dir / f"{status.id}.part").exists()
    assert not uploads._final(status.id).exists()
    assert uploads.status(case_id, status.id, authorize=allow, ctx=CTX).status == "open"
    with backend.engine.begin() as conn:
        conn.execute(BlobRow.__table__.delete().where(BlobRow.id == status.id))
    f = uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert read_back(backend, case_id, f.id) == data


# -- refusals ----------------------------------------------------------------------------


def test_wrong_offsets_are_conflicts(backend: State, uploads: UploadStore) -> None:
    case_id = new_case(backend)
    data = payload(3 * CHUNK)
    status = begin(uploads, case_id, len(data))
    for offset in (CHUNK, 1, 10 * CHUNK):
        with pytest.raises(ConflictError) as exc:
            put(uploads, case_id, status.id, offset, data[:CHUNK])
        assert "offset: expected 0" in exc.value.reasons
    with pytest.raises(ValidationError) as bad:
        put(uploads, case_id, status.id, -1, data[:CHUNK])
    assert bad.value.field == "offset"
    put(uploads, case_id, status.id, 0, data[:CHUNK])
    with pytest.raises(ConflictError, match="wrong offset"):
        put(uploads, case_id, status.id, 0, data[:CHUNK])  # a duplicate of an accepted chunk


@pytest.mark.parametrize(
    ("offset_chunks", "body"),
    [
        (0, CHUNK - 1),  # a short non-final chunk
        (0, CHUNK + 1),  # a long one
        (2, CHUNK - SEG + 1),  # the final chunk, one byte too many
        (2, CHUNK - SEG - 1),  # the final chunk, one byte short
        (0, 0),  # nothing at all
    ],
)
def test_chunks_of_the_wrong_length_are_refused_whole(
    backend: State, uploads: UploadStore, offset_chunks: int, body: int
) -> None:
    case_id = new_case(backend)
    data = payload(3 * CHUNK - SEG)
    status = begin(uploads, case_id, len(data))
    send_all(uploads, case_id, status.id, data[: offset_chunks * CHUNK])
    offset = offset_chunks * CHUNK
    with pytest.raises(ValidationError) as exc:
        put(uploads, case_id, status.id, offset, payload(body, seed=9))
    assert exc.value.field == "chunk"
    assert uploads.status(case_id, status.id, authorize=allow, ctx=CTX).received == offset
    send_all(uploads, case_id, status.id, data, start=offset)
    f = uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert read_back(backend, case_id, f.id) == data


def test_declared_length_is_checked_before_reading(backend: State, uploads: UploadStore) -> None:
    case_id = new_case(backend)
    status = begin(uploads, case_id, 2 * CHUNK)

    def never_read() -> Iterator[bytes]:
        raise AssertionError("the body was read although its length was wrong")
        yield b""

    with pytest.raises(ValidationError, match="chunk"):
        uploads.append_chunk(
            case_id, status.id, 0, never_read(), authorize=allow, ctx=CTX, length=CHUNK - 1
        )


def test_complete_before_every_byte_arrived(backend: State, uploads: UploadStore) -> None:
    case_id = new_case(backend)
    data = payload(2 * CHUNK + 5)
    status = begin(uploads, case_id, len(data))
    send_all(uploads, case_id, status.id, data[: 2 * CHUNK])
    with pytest.raises(ValidationError) as exc:
        uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert exc.value.field == "size"
    assert blob_count(backend) == 0
    send_all(uploads, case_id, status.id, data, start=2 * CHUNK)
    with pytest.raises(ConflictError) as full:
        put(uploads, case_id, status.id, len(data), b"x")  # nothing expected past the end
    assert "every byte" in full.value.reasons[0]
    assert uploads.complete(case_id, status.id, authorize=allow, ctx=CTX).size == len(data)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"size": 0}, "size"),
        ({"size": -5}, "size"),
        ({"size": True}, "size"),
        ({"size": 10**6 + 1}, "size"),
        ({"name": ""}, "name"),
        ({"name": "a/b.svs"}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"media_type": "tiff"}, "media_type"),
        ({"media_type": "image/<script>"}, "media_type"),
        ({"media_type": "x" * 60 + "/" + "y" * 60}, "media_type"),
    ],
)
def test_create_validates_its_input(backend: State, kwargs: dict, field: str) -> None:
    uploads = store_of(backend, max_size=10**6)
    case_id = new_case(backend)
    args = {"name": "a.svs", "size": 100, "media_type": "image/tiff", **kwargs}
    with pytest.raises(ValidationError) as exc:
        uploads.create(case_id, authorize=allow, ctx=CTX, **args)
    assert exc.value.field == field
    assert files_on_disk(backend) == []
    assert upload_row_count(backend) == 0


def upload_row_count(state: State) -> int:
    with state.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(UploadRow)).scalar_one()


def test_denied_and_unknown_are_refused_before_anything_happens(
    backend: State, uploads: UploadStore
) -> None:
    case_id = new_case(backend)
    other_case = new_case(backend)
    with pytest.raises(PermissionDeniedError):
        uploads.create(
            case_id, name="a.svs", size=10, media_type="image/tiff", authorize=deny, ctx=CTX
        )
    assert upload_row_count(backend) == 0 and files_on_disk(backend) == []
    status = begin(uploads, case_id, 10)
    for call in (
        lambda: put_as(uploads, case_id, status.id, deny),
        lambda: uploads.status(case_id, status.id, authorize=deny, ctx=CTX),
        lambda: uploads.complete(case_id, status.id, authorize=deny, ctx=CTX),
        lambda: uploads.abort(case_id, status.id, authorize=deny, ctx=CTX),
    ):
        with pytest.raises(PermissionDeniedError):
            call()
    denied = [e.action for e in entries(backend, case_id) if e.outcome == "denied"]
    assert denied == [
        "upload.create",
        "upload.chunk",
        "upload.status",
        "upload.complete",
        "upload.abort",
    ]
    # another case's upload, an unknown id, a malformed id: all "not found"
    for c, u in ((other_case, status.id), (case_id, str(uuid.uuid4())), (case_id, "../x")):
        with pytest.raises(NotFoundError):
            uploads.status(c, u, authorize=allow, ctx=CTX)
    assert uploads.status(case_id, status.id, authorize=allow, ctx=CTX).received == 0


def put_as(uploads: UploadStore, case_id: str, upload_id: str, authorize) -> None:
    uploads.append_chunk(case_id, upload_id, 0, iter([b"x" * 10]), authorize=authorize, ctx=CTX)


def test_open_uploads_per_user_are_limited(backend: State) -> None:
    uploads = store_of(backend, max_open_per_user=2)
    case_id = new_case(backend)
    first = begin(uploads, case_id, 10)
    begin(uploads, case_id, 10)
    with pytest.raises(ConflictError, match="open uploads"):
        begin(uploads, case_id, 10)
    uploads.abort(case_id, first.id, authorize=allow, ctx=CTX)
    begin(uploads, case_id, 10)


# -- abort, concurrency, tampering ---------------------------------------------------------


def test_abort_removes_partial_file_and_row(backend: State, uploads: UploadStore) -> None:
    case_id = new_case(backend)
    data = payload(2 * CHUNK + 3)
    status = begin(uploads, case_id, len(data))
    put(uploads, case_id, status.id, 0, data[:CHUNK])
    with pytest.raises(ConnectionResetError):
        uploads.append_chunk(
            case_id, status.id, CHUNK, interrupted(data[CHUNK:], 999), authorize=allow, ctx=CTX
        )
    uploads.abort(case_id, status.id, authorize=allow, ctx=CTX)
    assert files_on_disk(backend) == []
    assert upload_row(backend, status.id) is None
    for call in (
        lambda: uploads.status(case_id, status.id, authorize=allow, ctx=CTX),
        lambda: uploads.complete(case_id, status.id, authorize=allow, ctx=CTX),
        lambda: put(uploads, case_id, status.id, CHUNK, data[CHUNK:]),
        lambda: uploads.abort(case_id, status.id, authorize=allow, ctx=CTX),
    ):
        with pytest.raises(NotFoundError):
            call()
    abort = [e for e in entries(backend, case_id) if e.action == "upload.abort"]
    assert len(abort) == 1 and f"bytes={CHUNK}/{len(data)}" in abort[0].detail
    assert blob_count(backend) == 0


def test_a_second_writer_is_told_to_wait(backend: State, uploads: UploadStore) -> None:
    case_id = new_case(backend)
    data = payload(2 * CHUNK)
    status = begin(uploads, case_id, len(data))
    partial = uploads.partial_dir / f"{status.id}.part"
    # another worker (thread or process) is writing this upload right now
    with partial.open("r+b") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(UploadBusyError) as busy:
            put(uploads, case_id, status.id, 0, data[:CHUNK])
        assert "retry later" in busy.value.reasons[0]
    assert uploads.status(case_id, status.id, authorize=allow, ctx=CTX).received == 0
    send_all(uploads, case_id, status.id, data)
    with partial.open("r+b") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(UploadBusyError):
            uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    f = uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert read_back(backend, case_id, f.id) == data


def test_two_requests_for_one_offset_one_wins(backend: State, uploads: UploadStore) -> None:
    # a client retried while its first request was still streaming: the first to finish
    # is recorded, the other learns the new offset
    case_id = new_case(backend)
    data = payload(2 * CHUNK)
    status = begin(uploads, case_id, len(data))

    def body_with_a_rival() -> Iterator[bytes]:
        yield data[:SEG]
        put(uploads, case_id, status.id, 0, data[:CHUNK])
        yield data[SEG:CHUNK]

    with pytest.raises(ConflictError) as late:
        uploads.append_chunk(case_id, status.id, 0, body_with_a_rival(), authorize=allow, ctx=CTX)
    assert f"offset: expected {CHUNK}" in late.value.reasons
    send_all(uploads, case_id, status.id, data, start=CHUNK)
    f = uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert read_back(backend, case_id, f.id) == data


def test_abort_while_a_chunk_is_streaming(backend: State, uploads: UploadStore) -> None:
    case_id = new_case(backend)
    data = payload(2 * CHUNK)
    status = begin(uploads, case_id, len(data))

    def body() -> Iterator[bytes]:
        yield data[:SEG]
        uploads.abort(case_id, status.id, authorize=allow, ctx=CTX)
        yield data[SEG:CHUNK]

    with pytest.raises(ConflictError) as gone:
        uploads.append_chunk(case_id, status.id, 0, body(), authorize=allow, ctx=CTX)
    assert "aborted" in gone.value.reasons[0]
    assert files_on_disk(backend) == []
    assert upload_row_count(backend) == 0


def test_tampered_partial_fails_the_upload_and_removes_it(
    backend: State, uploads: UploadStore
) -> None:
    case_id = new_case(backend)
    data = payload(3 * CHUNK)
    status = begin(uploads, case_id, len(data))
    send_all(uploads, case_id, status.id, data)
    partial = uploads.partial_dir / f"{status.id}.part"
    with partial.open("r+b") as fh:
        fh.seek(HEADER_SIZE + 5)  # inside segment 0, which nothing re-checks until complete
        byte = fh.read(1)
        fh.seek(HEADER_SIZE + 5)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(IntegrityError):
        uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert uploads.status(case_id, status.id, authorize=allow, ctx=CTX).status == "aborted"
    assert files_on_disk(backend) == [] and blob_count(backend) == 0
    failed = [e for e in entries(backend, case_id) if e.outcome == "failed"]
    assert [e.action for e in failed] == ["upload.complete"]
    with pytest.raises(ConflictError):
        uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert backend.verify_audit().ok


def test_a_tail_cannot_be_paired_with_another_offset(backend: State, uploads: UploadStore) -> None:
    # someone with write access to the database rolls the tail back but not `received`
    case_id = new_case(backend)
    data = payload(3 * CHUNK)
    status = begin(uploads, case_id, len(data))
    put(uploads, case_id, status.id, 0, data[:CHUNK])
    old_tail = upload_row(backend, status.id).tail_enc
    put(uploads, case_id, status.id, CHUNK, data[CHUNK : 2 * CHUNK])
    with backend.engine.begin() as conn:
        conn.execute(update(UploadRow).where(UploadRow.id == status.id).values(tail_enc=old_tail))
    with pytest.raises(IntegrityError):
        put(uploads, case_id, status.id, 2 * CHUNK, data[2 * CHUNK :])
    assert uploads.status(case_id, status.id, authorize=allow, ctx=CTX).status == "aborted"
    assert files_on_disk(backend) == []


def test_no_plaintext_reaches_disk(backend: State, uploads: UploadStore) -> None:
    marker = f"UPLOAD-MARKER-{uuid.uuid4().hex[:12]}".encode()
    case_id = new_case(backend)
    data = bytearray(payload(3 * CHUNK + 77))
    # markers in every chunk, in the held-back tail of each chunk, and in the final bytes
    for offset in (10, CHUNK - SEG + 5, 2 * CHUNK - 40, 3 * CHUNK + 10):
        data[offset : offset + len(marker)] = marker
    data = bytes(data)
    status = begin(uploads, case_id, len(data), name=marker.decode() + ".svs")
    send_all(uploads, case_id, status.id, data[: 2 * CHUNK])

    def scan() -> list[str]:
        found = [str(p) for p in files_on_disk(backend) if marker in p.read_bytes()]
        url = make_url(backend.settings.db_url)
        if url.get_backend_name() == "sqlite":
            with closing(sqlite3.connect(url.database)) as conn:
                conn.execute("PRAGMA wal_checkpoint(FULL)")
            for p in Path(url.database).parent.glob(Path(url.database).name + "*"):
                if marker in p.read_bytes():
                    found.append(str(p))
        return found

    assert scan() == []  # mid-upload: partial file, encrypted tail and name
    send_all(uploads, case_id, status.id, data, start=2 * CHUNK)
    f = uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert scan() == []
    # positive control: the marker is there once decrypted
    assert marker in read_back(backend, case_id, f.id)


def test_purge_removes_idle_uploads_and_orphans(backend: State, uploads: UploadStore) -> None:
    case_id = new_case(backend)
    idle = begin(uploads, case_id, 2 * CHUNK)
    put(uploads, case_id, idle.id, 0, payload(CHUNK))
    fresh = begin(uploads, case_id, 10)
    orphan = uploads.partial_dir / f"{uuid.uuid4()}.part"
    orphan.write_bytes(b"left by a crash")
    long_ago = time.time() - 2 * 86400
    os.utime(orphan, (long_ago, long_ago))
    row = upload_row(backend, idle.id)
    with backend.engine.begin() as conn:
        conn.execute(
            update(UploadRow)
            .where(UploadRow.id == idle.id)
            .values(updated_at=row.updated_at - timedelta(days=8))
        )
    assert uploads.purge(idle_for=timedelta(days=7), ctx=CTX) == 2
    assert upload_row(backend, idle.id) is None and not orphan.exists()
    assert not (uploads.partial_dir / f"{idle.id}.part").exists()
    assert uploads.status(case_id, fresh.id, authorize=allow, ctx=CTX).status == "open"
    assert (uploads.partial_dir / f"{fresh.id}.part").exists()
    assert "upload.expire" in [e.action for e in entries(backend, case_id)]


def test_media_type_parameters_are_dropped_and_chunk_size_is_whole_segments(
    backend: State, uploads: UploadStore
) -> None:
    case_id = new_case(backend)
    status = uploads.create(
        case_id,
        name="notes.txt",
        size=5,
        media_type="Text/Plain; charset=utf-8",
        authorize=allow,
        ctx=CTX,
    )
    put(uploads, case_id, status.id, 0, b"hello")
    f = uploads.complete(case_id, status.id, authorize=allow, ctx=CTX)
    assert f.media_type == "text/plain"
    with pytest.raises(ValueError):
        store_of(backend, chunk_size=CHUNK + 1)


def test_cpms_admin_purge_uploads(backend: State, monkeypatch: pytest.MonkeyPatch) -> None:
    from cpms_hub import admin

    for name, value in (
        ("CPMS_STATE_DIR", backend.settings.state_dir),
        ("CPMS_DB_URL", backend.settings.db_url),
        ("CPMS_KEY_FILE", backend.settings.key_file),
        ("CPMS_BLOB_DIR", backend.settings.blob_dir),
    ):
        monkeypatch.setenv(name, value)
    case_id = new_case(backend)
    started = begin(backend.uploads, case_id, 10)
    put(backend.uploads, case_id, started.id, 0, payload(10))
    # a fresh upload survives the default of seven idle days
    assert admin.main(["purge-uploads"]) == 0
    assert upload_row(backend, started.id) is not None
    assert admin.main(["purge-uploads", "--idle-days", "0"]) == 0
    assert upload_row(backend, started.id) is None
    assert not (backend.uploads.partial_dir / f"{started.id}.part").exists()
