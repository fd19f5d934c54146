"""Resuming a segmented writer: checkpoints, stale bytes, nonce-reuse refusal, tampering.

Each test plays the part of an upload spread over several requests (and processes): a
writer is checkpointed, dropped, and a new one resumed from the blob file and the
checkpoint alone. The results must read exactly like a blob written in one go, and a
resumed writer must never seal different plaintext under a nonce used before.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from cpms_hub.crypto import HEADER_SIZE, MIN_SEGMENT_SIZE, TAG_SIZE, new_data_key
from cpms_hub.crypto.segmented import (
    SegmentedReader,
    SegmentedWriter,
    WriterCheckpoint,
    iter_plaintext,
)
from cpms_hub.domain.errors import ConflictError, IntegrityError

KEY = new_data_key()
BLOB = "blob-resume-1"
SEG = MIN_SEGMENT_SIZE
STORED = SEG + TAG_SIZE
DATA = random.Random(7).randbytes(5 * SEG + SEG // 2)


def _read(path: Path, *, key: bytes = KEY, blob_id: str = BLOB) -> bytes:
    with path.open("rb") as fh, SegmentedReader(key, fh, blob_id=blob_id) as reader:
        return reader.read_all()


def _start(path: Path, data: bytes) -> WriterCheckpoint:
    """A fresh blob holding ``data``, suspended: (file on disk, checkpoint returned)."""
    with path.open("wb") as fh:
        writer = SegmentedWriter(KEY, fh, blob_id=BLOB, segment_size=SEG)
        writer.write(data)
        return writer.checkpoint()


def _resume(
    path: Path, checkpoint: WriterCheckpoint, data: bytes, *, close: bool
) -> WriterCheckpoint | None:
    with path.open("r+b") as fh:
        writer = SegmentedWriter.resume(KEY, fh, blob_id=BLOB, checkpoint=checkpoint)
        writer.write(data)
        if close:
            writer.close()
            return None
        return writer.checkpoint()


@pytest.mark.parametrize(
    "split",
    [0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG, 3 * SEG + 7, len(DATA) - 1, len(DATA)],
)
def test_resume_at_any_point_reads_like_one_write(tmp_path: Path, split: int) -> None:
    path = tmp_path / "blob"
    checkpoint = _start(path, DATA[:split])
    assert checkpoint.plaintext_size == split
    assert path.stat().st_size == checkpoint.stored_size
    assert len(checkpoint.tail) <= SEG
    _resume(path, checkpoint, DATA[split:], close=True)
    assert _read(path) == DATA
    # the file is exactly what the layout demands: nothing stale, nothing missing
    segments = -(-len(DATA) // SEG)
    assert path.stat().st_size == HEADER_SIZE + segments * TAG_SIZE + len(DATA)
    with path.open("rb") as fh:
        assert b"".join(iter_plaintext(KEY, fh, blob_id=BLOB)) == DATA


def test_many_resumes_in_a_chain(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    rng = random.Random(11)
    data = rng.randbytes(9 * SEG + 123)
    pos = rng.randrange(1, SEG)
    checkpoint = _start(path, data[:pos])
    while pos < len(data):
        step = rng.choice([1, 17, SEG - 3, SEG, SEG + 5, 2 * SEG])
        checkpoint = _resume(path, checkpoint, data[pos : pos + step], close=False)
        pos += step
        assert checkpoint.plaintext_size == min(pos, len(data))
    _resume(path, checkpoint, b"", close=True)
    assert _read(path) == data


def test_resuming_twice_from_one_checkpoint_gives_identical_bytes(tmp_path: Path) -> None:
    # GCM is deterministic for a fixed nonce: the property the stale-byte check relies on
    first, second = tmp_path / "a", tmp_path / "b"
    checkpoint = _start(first, DATA[: 2 * SEG + 5])
    second.write_bytes(first.read_bytes())
    _resume(first, checkpoint, DATA[2 * SEG + 5 :], close=True)
    _resume(second, checkpoint, DATA[2 * SEG + 5 :], close=True)
    assert first.read_bytes() == second.read_bytes()


def test_empty_blob_resumed_and_closed(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    checkpoint = _start(path, b"")
    assert checkpoint == WriterCheckpoint(SEG, 0, b"")
    _resume(path, checkpoint, b"", close=True)
    assert _read(path) == b""


def test_interrupted_attempt_then_same_data_resumes(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    checkpoint = _start(path, DATA[: SEG + 10])
    committed = path.read_bytes()
    # an attempt that sealed three more segments, then died (no checkpoint recorded)
    with path.open("r+b") as fh:
        writer = SegmentedWriter.resume(KEY, fh, blob_id=BLOB, checkpoint=checkpoint)
        writer.write(DATA[SEG + 10 : 4 * SEG + 20])
        writer.abort()
    assert path.stat().st_size > checkpoint.stored_size
    assert path.read_bytes()[: len(committed)] == committed
    # the retry sends the same bytes again: accepted, and nothing stale survives close()
    _resume(path, checkpoint, DATA[SEG + 10 :], close=True)
    assert _read(path) == DATA


def test_different_data_over_stale_segments_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    checkpoint = _start(path, DATA[:SEG])
    with path.open("r+b") as fh:
        writer = SegmentedWriter.resume(KEY, fh, blob_id=BLOB, checkpoint=checkpoint)
        writer.write(DATA[SEG : 3 * SEG + 1])
        writer.abort()
    before = path.read_bytes()
    changed = bytearray(DATA)
    changed[2 * SEG + 100] ^= 0x01  # one bit, in a segment sealed by the dead attempt
    with path.open("r+b") as fh:
        writer = SegmentedWriter.resume(KEY, fh, blob_id=BLOB, checkpoint=checkpoint)
        with pytest.raises(ConflictError, match="nonce reuse refused"):
            writer.write(bytes(changed[SEG:]))
        assert writer.closed  # a refused writer cannot be finished
    # the conflicting ciphertext never reached the file
    assert path.read_bytes() == before
    # the original data still resumes
    _resume(path, checkpoint, DATA[SEG:], close=True)
    assert _read(path) == DATA


def test_torn_stale_segment(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    checkpoint = _start(path, DATA[: SEG + 1])
    with path.open("r+b") as fh:
        writer = SegmentedWriter.resume(KEY, fh, blob_id=BLOB, checkpoint=checkpoint)
        writer.write(DATA[SEG + 1 : 3 * SEG])
        writer.abort()
    # a crash in the middle of writing a segment leaves part of it
    torn = checkpoint.stored_size + STORED // 3
    with path.open("r+b") as fh:
        fh.truncate(torn)
    changed = bytearray(DATA)
    changed[SEG + 5] ^= 0x80  # inside the torn part
    with path.open("r+b") as fh:
        writer = SegmentedWriter.resume(KEY, fh, blob_id=BLOB, checkpoint=checkpoint)
        with pytest.raises(ConflictError):
            writer.write(bytes(changed[SEG + 1 :]))
    _resume(path, checkpoint, DATA[SEG + 1 :], close=True)
    assert _read(path) == DATA


def test_stale_segment_under_the_other_last_flag_may_be_replaced(tmp_path: Path) -> None:
    # a stale *final* segment (a finished attempt that was never recorded) and a resume
    # that continues past it: same index, other nonce, so replacing it is safe
    path = tmp_path / "blob"
    checkpoint = _start(path, DATA[: 2 * SEG + 3])
    with path.open("r+b") as fh:
        writer = SegmentedWriter.resume(KEY, fh, blob_id=BLOB, checkpoint=checkpoint)
        writer.write(b"a different ending")
        writer.close()
    _resume(path, checkpoint, DATA[2 * SEG + 3 :], close=True)
    assert _read(path) == DATA

    # and the other way round: a stale full non-final segment, then close() at its index
    path = tmp_path / "blob2"
    checkpoint = _start(path, DATA[: SEG + 3])
    with path.open("r+b") as fh:
        writer = SegmentedWriter.resume(KEY, fh, blob_id=BLOB, checkpoint=checkpoint)
        writer.write(DATA[SEG + 3 : 4 * SEG])
        writer.abort()
    _resume(path, checkpoint, b"short end", close=True)
    assert _read(path) == DATA[:SEG] + DATA[SEG : SEG + 3] + b"short end"


def test_two_final_segments_with_different_content_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    checkpoint = _start(path, DATA[: SEG + 3])
    _resume(path, checkpoint, b"ending one", close=True)
    with path.open("r+b") as fh:
        writer = SegmentedWriter.resume(KEY, fh, blob_id=BLOB, checkpoint=checkpoint)
        writer.write(b"ending two")
        with pytest.raises(ConflictError):
            writer.close()
    # the same ending again is fine (a repeated close after a lost acknowledgement)
    _resume(path, checkpoint, b"ending one", close=True)
    assert _read(path) == DATA[: SEG + 3] + b"ending one"


# -- tampering and misuse --------------------------------------------------------------


def test_tampered_header_fails_at_resume(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    checkpoint = _start(path, DATA[: 3 * SEG])
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE - 1] ^= 0x01  # last byte of the nonce prefix
    path.write_bytes(bytes(raw))
    with path.open("r+b") as fh, pytest.raises(IntegrityError, match="segment 1"):
        SegmentedWriter.resume(KEY, fh, blob_id=BLOB, checkpoint=checkpoint)


@pytest.mark.parametrize(("key", "blob_id"), [(new_data_key(), BLOB), (KEY, "another-blob")])
def test_wrong_key_or_blob_id_fails_at_resume(tmp_path: Path, key: bytes, blob_id: str) -> None:
    path = tmp_path / "blob"
    checkpoint = _start(path, DATA[: 2 * SEG + 1])
    with path.open("r+b") as fh, pytest.raises(IntegrityError):
        SegmentedWriter.resume(key, fh, blob_id=blob_id, checkpoint=checkpoint)


def test_tampered_earlier_segment_is_caught_by_the_reader(tmp_path: Path) -> None:
    # resume checks only the segment before the checkpoint (cheap); reading checks all
    path = tmp_path / "blob"
    checkpoint = _start(path, DATA[: 3 * SEG + 1])
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE + 10] ^= 0x01  # inside segment 0
    path.write_bytes(bytes(raw))
    _resume(path, checkpoint, DATA[3 * SEG + 1 :], close=True)
    with path.open("rb") as fh, SegmentedReader(KEY, fh, blob_id=BLOB) as reader:
        with pytest.raises(IntegrityError, match="segment 0"):
            reader.read_at(0, 10)
    with path.open("rb") as fh, pytest.raises(IntegrityError):
        b"".join(iter_plaintext(KEY, fh, blob_id=BLOB))


def test_swapped_segments_before_the_checkpoint_fail(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    checkpoint = _start(path, DATA[: 3 * SEG + 1])
    raw = bytearray(path.read_bytes())
    a = slice(HEADER_SIZE, HEADER_SIZE + STORED)
    b = slice(HEADER_SIZE + STORED, HEADER_SIZE + 2 * STORED)
    raw[a], raw[b] = raw[b], raw[a]
    path.write_bytes(bytes(raw))
    # the segment before the checkpoint (index 2) is intact, so resuming works...
    _resume(path, checkpoint, DATA[3 * SEG + 1 :], close=True)
    # ...but the swap of segments 0 and 1 shows on reading
    with path.open("rb") as fh, SegmentedReader(KEY, fh, blob_id=BLOB) as reader:
        with pytest.raises(IntegrityError, match="segment 0"):
            reader.read_all()


def test_file_shorter_than_checkpoint_fails(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    checkpoint = _start(path, DATA[: 3 * SEG + 1])
    with path.open("r+b") as fh:
        fh.truncate(checkpoint.stored_size - 1)
    with path.open("r+b") as fh, pytest.raises(IntegrityError, match="shorter"):
        SegmentedWriter.resume(KEY, fh, blob_id=BLOB, checkpoint=checkpoint)


def test_checkpoint_from_another_segment_size_fails(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    checkpoint = _start(path, DATA[:SEG])
    other = WriterCheckpoint(2 * SEG, 0, checkpoint.tail)
    with path.open("r+b") as fh, pytest.raises(IntegrityError, match="segment size"):
        SegmentedWriter.resume(KEY, fh, blob_id=BLOB, checkpoint=other)


def test_final_blob_from_resume_is_truncation_proof(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    checkpoint = _start(path, DATA[: 2 * SEG])
    _resume(path, checkpoint, DATA[2 * SEG :], close=True)
    raw = path.read_bytes()
    # cut at the boundary before the final segment: the last flag is missing
    cut = HEADER_SIZE + 5 * STORED
    with pytest.raises(IntegrityError):
        SegmentedReader(KEY, io.BytesIO(raw[:cut]), blob_id=BLOB).read_all()


@pytest.mark.parametrize(
    ("segments", "tail"),
    [(-1, b"x"), (0, b"x" * (SEG + 1)), (2, b"")],
)
def test_invalid_checkpoints_are_refused(segments: int, tail: bytes) -> None:
    with pytest.raises(ValueError):
        WriterCheckpoint(SEG, segments, tail)


def test_checkpoint_repr_hides_the_tail_and_closed_writers_have_none() -> None:
    secret = b"PLAINTEXT-TAIL-MARKER"
    checkpoint = WriterCheckpoint(SEG, 0, secret)
    assert b"MARKER".decode() not in repr(checkpoint)
    writer = SegmentedWriter(KEY, io.BytesIO(), blob_id=BLOB, segment_size=SEG)
    writer.write(secret)
    assert writer.checkpoint().tail == secret
    writer.close()
    with pytest.raises(ValueError):
        writer.checkpoint()
