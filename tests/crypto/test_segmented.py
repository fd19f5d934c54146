"""Segmented blob encryption: round trips, random access, tamper and truncation detection."""

from __future__ import annotations

import hashlib
import io
import os
import random
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpms_hub.crypto import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
    TAG_SIZE,
    SegmentedReader,
    SegmentedWriter,
    encrypt_file,
    iter_plaintext,
    new_data_key,
)
from cpms_hub.domain.errors import IntegrityError

KEY = new_data_key()
BLOB = "blob-7d1e"
SEGMENT_SIZES = [MIN_SEGMENT_SIZE, MAX_SEGMENT_SIZE]


def _plaintext(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _encrypt(
    plaintext: bytes, *, blob_id: str = BLOB, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> bytes:
    dst = io.BytesIO()
    size = encrypt_file(KEY, io.BytesIO(plaintext), dst, blob_id=blob_id, segment_size=segment_size)
    assert size == len(plaintext)
    return dst.getvalue()


def _reader(ciphertext: bytes, *, blob_id: str = BLOB, key: bytes = KEY) -> SegmentedReader:
    return SegmentedReader(key, io.BytesIO(ciphertext), blob_id=blob_id)


def _read_all(ciphertext: bytes, **kwargs) -> bytes:
    with _reader(ciphertext, **kwargs) as reader:
        return reader.read_all()


def _segment(ciphertext: bytes, index: int, segment_size: int) -> slice:
    stored = segment_size + TAG_SIZE
    start = HEADER_SIZE + index * stored
    return slice(start, start + stored)


def _sizes(segment_size: int) -> list[int]:
    return [0, 1, segment_size - 1, segment_size, segment_size + 1, segment_size * 7 // 2]


@pytest.mark.parametrize("segment_size", SEGMENT_SIZES)
def test_round_trip(segment_size: int) -> None:
    for size in _sizes(segment_size):
        plaintext = _plaintext(size, seed=size)
        ciphertext = _encrypt(plaintext, segment_size=segment_size)
        segments = max(1, -(-size // segment_size))
        assert len(ciphertext) == HEADER_SIZE + size + segments * TAG_SIZE
        with _reader(ciphertext) as reader:
            assert reader.size == size
            assert reader.read_all() == plaintext
            assert reader.read_at(size, 10) == b""
            assert reader.read_at(size + 100, 10) == b""
        streamed = iter_plaintext(KEY, io.BytesIO(ciphertext), blob_id=BLOB, chunk_segments=2)
        assert b"".join(streamed) == plaintext


def test_writer_with_odd_write_sizes_matches_reader() -> None:
    plaintext = _plaintext(200_000, seed=3)
    dst = io.BytesIO()
    with SegmentedWriter(KEY, dst, blob_id=BLOB, segment_size=MIN_SEGMENT_SIZE) as writer:
        pos = 0
        for step in [0, 1, 16383, 16384, 16385, 50_000, 7, 100_000]:
            assert writer.write(memoryview(plaintext)[pos : pos + step]) == len(
                plaintext[pos : pos + step]
            )
            pos += step
        writer.write(plaintext[pos:])
    assert writer.closed and writer.plaintext_size == len(plaintext)
    assert _read_all(dst.getvalue()) == plaintext
    with pytest.raises(ValueError):
        writer.write(b"more")


def test_ciphertext_is_randomised_and_hides_plaintext() -> None:
    plaintext = b"A" * 40_000
    first, second = _encrypt(plaintext), _encrypt(plaintext)
    assert first != second
    assert first[:7] == b"CPMSEG1"
    assert b"AAAAAAAA" not in first


@pytest.mark.parametrize("segment_size", [0, MIN_SEGMENT_SIZE - 1, MAX_SEGMENT_SIZE + 1])
def test_segment_size_out_of_range(segment_size: int) -> None:
    with pytest.raises(ValueError):
        SegmentedWriter(KEY, io.BytesIO(), blob_id=BLOB, segment_size=segment_size)


def _random_access_sample(segment_size: int) -> tuple[bytes, bytes]:
    plaintext = _plaintext(segment_size * 7 // 2, seed=segment_size)
    return plaintext, _encrypt(plaintext, segment_size=segment_size)


# Built once: hypothesis examples reuse them instead of re-encrypting per example.
_RANDOM_ACCESS = {size: _random_access_sample(size) for size in SEGMENT_SIZES}


@settings(
    max_examples=150,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the repo
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    segment_size=st.sampled_from(SEGMENT_SIZES),
    offset=st.integers(min_value=0, max_value=4 * MAX_SEGMENT_SIZE),
    length=st.integers(min_value=0, max_value=3 * MAX_SEGMENT_SIZE),
)
def test_read_at_equals_slicing(segment_size: int, offset: int, length: int) -> None:
    plaintext, ciphertext = _RANDOM_ACCESS[segment_size]
    with _reader(ciphertext) as reader:
        assert reader.read_at(offset, length) == plaintext[offset : offset + length]
        # Again, now partly from the segment cache.
        assert reader.read_at(offset, length) == plaintext[offset : offset + length]
        tail = offset + length
        assert reader.read_at(tail, 100) == plaintext[tail : tail + 100]


def test_read_at_rejects_negative_arguments() -> None:
    with _reader(_encrypt(b"abc")) as reader:
        with pytest.raises(ValueError):
            reader.read_at(-1, 1)
        with pytest.raises(ValueError):
            reader.read_at(0, -1)


def test_buffered_reader_file_semantics() -> None:
    plaintext, ciphertext = _RANDOM_ACCESS[MIN_SEGMENT_SIZE]
    expected = io.BytesIO(plaintext)
    raw = _reader(ciphertext)
    assert raw.readable() and raw.seekable() and not raw.writable()
    with io.BufferedReader(raw, buffer_size=8192) as handle:
        rng = random.Random(7)
        for _ in range(200):
            whence = rng.choice([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
            if whence == io.SEEK_SET:
                target = rng.randrange(0, len(plaintext) + 100)
            elif whence == io.SEEK_CUR:
                target = rng.randrange(-min(expected.tell(), 5000), 5000)
            else:
                target = -rng.randrange(0, min(len(plaintext), 70_000))
            assert handle.seek(target, whence) == expected.seek(target, whence)
            count = rng.choice([0, 1, 100, 4096, 20_000, 70_000])
            assert handle.read(count) == expected.read(count)
            assert handle.tell() == expected.tell()
        handle.seek(0)
        assert handle.read() == plaintext
        assert handle.read(10) == b""
        handle.seek(len(plaintext) - 5)
        assert handle.read(100) == plaintext[-5:]
    assert raw.closed
    with pytest.raises(ValueError):
        raw.read_at(0, 1)


def test_readinto_and_readall() -> None:
    plaintext = _plaintext(50_000, seed=9)
    with _reader(_encrypt(plaintext, segment_size=MIN_SEGMENT_SIZE)) as reader:
        buffer = bytearray(30_000)
        assert reader.readinto(buffer) == 30_000
        assert bytes(buffer) == plaintext[:30_000]
        assert reader.readall() == plaintext[30_000:]
        assert reader.read() == b""


def test_explicit_size_matches_file_size(tmp_path: Path) -> None:
    plaintext = _plaintext(100_000, seed=11)
    path = tmp_path / "blob.enc"
    path.write_bytes(_encrypt(plaintext))
    with path.open("rb") as src:
        with SegmentedReader(KEY, src, blob_id=BLOB, size=path.stat().st_size) as reader:
            assert reader.read_at(70_000, 1000) == plaintext[70_000:71_000]


# -- tampering ------------------------------------------------------------------------------


def _assert_rejected(ciphertext: bytes, *, blob_id: str = BLOB, key: bytes = KEY) -> str:
    """Opening and reading everything (random access and streaming) must fail."""
    with pytest.raises(IntegrityError) as info:
        _read_all(ciphertext, blob_id=blob_id, key=key)
    with pytest.raises(IntegrityError):
        b"".join(iter_plaintext(key, io.BytesIO(ciphertext), blob_id=blob_id, chunk_segments=1))
    message = str(info.value)
    assert blob_id in message
    assert info.value.__cause__ is None
    return message


@pytest.fixture(params=SEGMENT_SIZES)
def sample(request: pytest.FixtureRequest) -> tuple[int, bytes, bytes]:
    segment_size = request.param
    plaintext = _plaintext(segment_size * 7 // 2, seed=1)
    return segment_size, plaintext, _encrypt(plaintext, segment_size=segment_size)


def test_truncation_drop_last_segment(sample: tuple[int, bytes, bytes]) -> None:
    segment_size, _, ciphertext = sample
    last = _segment(ciphertext, 3, segment_size)
    message = _assert_rejected(ciphertext[: last.start])
    assert "segment 2" in message


def test_truncation_mid_segment(sample: tuple[int, bytes, bytes]) -> None:
    segment_size, _, ciphertext = sample
    for cut in (1, 15, 16, 17, 1000, segment_size):
        _assert_rejected(ciphertext[: HEADER_SIZE + cut])
    _assert_rejected(ciphertext[:-1])
    _assert_rejected(ciphertext[:-TAG_SIZE])
    _assert_rejected(ciphertext[: HEADER_SIZE + segment_size + 2 * TAG_SIZE])
    _assert_rejected(ciphertext[:HEADER_SIZE])
    _assert_rejected(ciphertext[: HEADER_SIZE - 1])


def test_empty_blob_truncated() -> None:
    ciphertext = _encrypt(b"")
    assert _read_all(ciphertext) == b""
    _assert_rejected(ciphertext[:HEADER_SIZE])


def test_appended_data_fails(sample: tuple[int, bytes, bytes]) -> None:
    _, _, ciphertext = sample
    _assert_rejected(ciphertext + b"\x00")
    _assert_rejected(ciphertext + ciphertext[HEADER_SIZE:])


def test_swapped_segments_fail(sample: tuple[int, bytes, bytes]) -> None:
    segment_size, _, ciphertext = sample
    first, second = _segment(ciphertext, 0, segment_size), _segment(ciphertext, 1, segment_size)
    swapped = bytearray(ciphertext)
    swapped[first], swapped[second] = ciphertext[second], ciphertext[first]
    message = _assert_rejected(bytes(swapped))
    assert "segment 0" in message
    with _reader(bytes(swapped)) as reader:
        with pytest.raises(IntegrityError, match="segment 1"):
            reader.read_at(segment_size + 10, 10)
        # Untouched segments remain readable: random access authenticates per segment.
        assert reader.read_at(2 * segment_size, 10) == sample[1][2 * segment_size :][:10]


def test_segment_from_another_blob_fails(sample: tuple[int, bytes, bytes]) -> None:
    segment_size, plaintext, ciphertext = sample
    same_id_other_salt = _encrypt(plaintext, segment_size=segment_size)
    other_id = _encrypt(plaintext, blob_id="blob-other", segment_size=segment_size)
    for donor in (same_id_other_salt, other_id):
        for index in (1, 3):
            where = _segment(ciphertext, index, segment_size)
            spliced = bytearray(ciphertext)
            spliced[where] = donor[where]
            message = _assert_rejected(bytes(spliced))
            assert f"segment {index}" in message


def test_header_from_another_blob_fails(sample: tuple[int, bytes, bytes]) -> None:
    segment_size, plaintext, ciphertext = sample
    donor = _encrypt(plaintext, segment_size=segment_size)
    _assert_rejected(donor[:HEADER_SIZE] + ciphertext[HEADER_SIZE:])


def test_flipped_bit_in_header_fails(sample: tuple[int, bytes, bytes]) -> None:
    _, _, ciphertext = sample
    for position in range(HEADER_SIZE):
        tampered = bytearray(ciphertext)
        tampered[position] ^= 0x01
        _assert_rejected(bytes(tampered))


def test_flipped_bit_in_segment_fails(sample: tuple[int, bytes, bytes]) -> None:
    segment_size, _, ciphertext = sample
    for index, offset in [(0, 0), (1, 5000), (2, segment_size + TAG_SIZE - 1), (3, 3)]:
        tampered = bytearray(ciphertext)
        tampered[_segment(ciphertext, index, segment_size).start + offset] ^= 0x80
        message = _assert_rejected(bytes(tampered))
        assert f"segment {index}" in message


def test_wrong_blob_id_and_wrong_key_fail(sample: tuple[int, bytes, bytes]) -> None:
    _, plaintext, ciphertext = sample
    _assert_rejected(ciphertext, blob_id="blob-other")
    _assert_rejected(ciphertext, key=new_data_key())


def test_errors_do_not_leak_content() -> None:
    plaintext = b"SECRET-PATIENT-DATA" * 100
    ciphertext = bytearray(_encrypt(plaintext))
    ciphertext[HEADER_SIZE + 3] ^= 1
    with pytest.raises(IntegrityError) as info:
        _read_all(bytes(ciphertext))
    message = str(info.value)
    assert "SECRET" not in message
    assert bytes(ciphertext[HEADER_SIZE : HEADER_SIZE + 8]).hex() not in message
    assert KEY.hex() not in message
    assert KEY.hex() not in repr(_reader(_encrypt(plaintext)))


# -- streaming ------------------------------------------------------------------------------


class _HashingSink(io.RawIOBase):
    """Write-only sink that keeps nothing but a digest and a byte count."""

    def __init__(self) -> None:
        super().__init__()
        self.digest = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.digest.update(data)
        self.count += len(data)
        return len(data)


def test_streaming_20_mb_with_bounded_memory(tmp_path: Path) -> None:
    total = 20 * 1024 * 1024
    chunk = os.urandom(1_000_003)  # odd size: segments never align with writes
    expected = hashlib.sha256()
    path = tmp_path / "big.enc"

    with path.open("wb") as dst:
        tracemalloc.start()
        try:
            with SegmentedWriter(KEY, dst, blob_id=BLOB) as writer:
                written = 0
                while written < total:
                    piece = memoryview(chunk)[: total - written]
                    writer.write(piece)
                    expected.update(piece)
                    written += len(piece)
                    assert len(writer._buffer) <= DEFAULT_SEGMENT_SIZE
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert writer.plaintext_size == total
    assert peak < 4 * DEFAULT_SEGMENT_SIZE + 64 * 1024

    sink = _HashingSink()
    with path.open("rb") as src:
        tracemalloc.start()
        try:
            for piece in iter_plaintext(KEY, src, blob_id=BLOB, chunk_segments=4):
                sink.write(piece)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert sink.count == total
    assert sink.digest.digest() == expected.digest()
    # A small multiple of one chunk (4 segments), nowhere near the 20 MB blob.
    assert peak < 2 * 1024 * 1024

    with path.open("rb") as src, SegmentedReader(KEY, src, blob_id=BLOB) as reader:
        assert reader.size == total
        offset = total - 100_000
        piece = reader.read_at(offset, 200_000)
        assert len(piece) == 100_000


def test_failed_write_leaves_unreadable_blob() -> None:
    dst = io.BytesIO()
    with pytest.raises(RuntimeError):
        with SegmentedWriter(KEY, dst, blob_id=BLOB, segment_size=MIN_SEGMENT_SIZE) as writer:
            writer.write(_plaintext(3 * MIN_SEGMENT_SIZE))
            raise RuntimeError("upload interrupted")
    _assert_rejected(dst.getvalue())


def test_tifffile_can_read_through_reader() -> None:
    tifffile = pytest.importorskip("tifffile")
    numpy = pytest.importorskip("numpy")
    image = numpy.arange(256 * 256, dtype=numpy.uint16).reshape(256, 256)
    plain = io.BytesIO()
    tifffile.imwrite(plain, image, tile=(64, 64))
    ciphertext = _encrypt(plain.getvalue(), segment_size=MIN_SEGMENT_SIZE)
    with io.BufferedReader(_reader(ciphertext)) as handle, tifffile.TiffFile(handle) as tif:
        assert (tif.pages[0].asarray() == image).all()


def test_failed_destination_write_aborts_blob() -> None:
    class _Failing(io.BytesIO):
        def write(self, data) -> int:  # type: ignore[override]
            if self.tell() > HEADER_SIZE:
                raise OSError("disk full")
            return super().write(data)

    dst = _Failing()
    writer = SegmentedWriter(KEY, dst, blob_id=BLOB, segment_size=MIN_SEGMENT_SIZE)
    with pytest.raises(OSError):
        writer.write(_plaintext(5 * MIN_SEGMENT_SIZE))
    assert writer.closed
    writer.close()  # no-op: a final segment must not be written after a failure
    _assert_rejected(dst.getvalue())
