"""Segmented streaming encryption of blobs (slides, DICOM, attachments) with random access.

The construction follows Tink's streaming AEAD "AES-GCM-HKDF" (see the Tink documentation,
*Streaming AEAD*, and Hoang, Reyhanitabar, Rogaway, Vizár: "Online Authenticated-Encryption
and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015, whose STREAM construction it
instantiates):

* The plaintext is cut into fixed-size segments (16-64 KiB). Each is sealed separately with
  AES-256-GCM (NIST SP 800-38D), so a read of a few KiB from a multi-GB slide decrypts and
  authenticates only the one or two segments it touches.
* Every blob gets its own key, HKDF-SHA256 (RFC 5869) of the case data key with a random
  16-byte salt and ``info = b"cpms-blob:" + blob_id``. Binding the blob id into the key means
  a blob (or one of its segments) copied under another id does not authenticate, and the
  fresh key per blob keeps GCM far from its per-key limits whatever the blob size.
* The 12-byte nonce of segment *i* is ``nonce_prefix (7 random bytes) || i (u32 BE) ||
  last (1 byte)``. Because the index is in the nonce, reordered or swapped segments fail;
  because the final segment alone carries ``last = 1``, a file truncated at a segment
  boundary fails too. Unlike Tink, the header is also the associated data of every segment,
  so any change to it (segment size, salt, prefix) is detected.

File layout::

    header  = b"CPMSEG1" | segment size (u32 BE) | salt (16) | nonce prefix (7)   (34 bytes)
    segment = AES-GCM(plaintext of segment_size bytes, or fewer for the final one) | tag (16)

All segments but the last hold exactly ``segment_size`` plaintext bytes; the last holds
1..segment_size bytes, or 0 only when the whole blob is empty. The layout is therefore fully
determined by the ciphertext size, which is how :class:`SegmentedReader` finds any segment.

Resuming a writer (uploads that span many requests and service restarts)
-------------------------------------------------------------------------

A writer's whole state is the header (on disk), the number of full segments already
written, and the plaintext it holds back (at most one segment, never on disk: the last
segment must be non-empty and only ``close()`` may flag it). :meth:`SegmentedWriter.checkpoint`
returns the last two as a :class:`WriterCheckpoint`; the caller makes the blob file durable,
keeps the checkpoint (the upload store keeps the tail encrypted in its database), and later
:meth:`SegmentedWriter.resume` reopens the file and carries on as if never interrupted.

Resuming re-seals segment indexes, and so nonces, that an interrupted attempt may already
have used: with GCM, one nonce sealing two different plaintexts leaks their XOR and lets an
attacker who sees both ciphertexts forge segments. A resumed writer therefore does not
truncate what lies past the checkpoint; it treats those bytes as *stale* and, whenever it
seals a segment over them, requires the new sealed bytes to equal the stale ones (GCM is
deterministic, so the same nonce and plaintext give the same bytes; equal bytes under one
nonce mean equal plaintext). A segment whose stale bytes authenticate under the other
``last`` flag used a different nonce and may be replaced. Anything else raises
:class:`~cpms_hub.domain.errors.ConflictError` before the new ciphertext reaches ``dst``:
resending the same data resumes, sending different data for an offset already sealed is
refused. ``close()`` truncates whatever stale bytes lie past the final segment.

Errors never contain plaintext, ciphertext or key bytes; they name the blob id and the
segment index.
"""

from __future__ import annotations

import hmac
import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cpms_hub.domain.errors import ConflictError, IntegrityError

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "HEADER_SIZE",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "TAG_SIZE",
    "SegmentedReader",
    "SegmentedWriter",
    "WriterCheckpoint",
    "encrypt_file",
    "iter_plaintext",
]

DEFAULT_SEGMENT_SIZE = 64 * 1024
MIN_SEGMENT_SIZE = 16 * 1024
MAX_SEGMENT_SIZE = 64 * 1024
TAG_SIZE = 16

_MAGIC = b"CPMSEG1"
_HEADER = struct.Struct(">7sI16s7s")
HEADER_SIZE = _HEADER.size
_NONCE_SUFFIX = struct.Struct(">IB")
_KEY_SIZE = 32
# The segment index is a u32 in the nonce: at 64 KiB per segment that allows 256 TiB.
_MAX_SEGMENTS = 2**32


def _check_segment_size(segment_size: int) -> None:
    if (
        not isinstance(segment_size, int)
        or not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE
    ):
        raise ValueError(
            f"segment size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE} bytes"
        )


class _BlobCipher:
    """Per-blob key, nonce prefix and header; seals and opens single segments."""

    __slots__ = ("_aead", "_prefix", "blob_id", "header", "segment_size")

    def __init__(self, data_key: bytes, blob_id: str, header: bytes) -> None:
        if not isinstance(data_key, bytes | bytearray) or len(data_key) != _KEY_SIZE:
            raise ValueError(f"data key must be {_KEY_SIZE} bytes")
        if not isinstance(blob_id, str) or not blob_id:
            raise ValueError("blob_id must be a non-empty str")
        self.blob_id = blob_id
        if len(header) != HEADER_SIZE:
            raise IntegrityError(f"blob {blob_id!r}: header is truncated")
        magic, segment_size, salt, prefix = _HEADER.unpack(header)
        if magic != _MAGIC:
            raise IntegrityError(f"blob {blob_id!r} is not a CPMS segmented blob (bad magic)")
        if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
            raise IntegrityError(f"blob {blob_id!r}: header has an invalid segment size")
        self.header = bytes(header)
        self.segment_size = segment_size
        self._prefix = prefix
        # Derived once per reader/writer, never per segment: it is the expensive part.
        blob_key = HKDF(
            algorithm=hashes.SHA256(),
            length=_KEY_SIZE,
            salt=salt,
            info=b"cpms-blob:" + blob_id.encode("utf-8"),
        ).derive(bytes(data_key))
        self._aead = AESGCM(blob_key)

    @classmethod
    def create(cls, data_key: bytes, blob_id: str, segment_size: int) -> _BlobCipher:
        _check_segment_size(segment_size)
        header = _HEADER.pack(_MAGIC, segment_size, os.urandom(16), os.urandom(7))
        return cls(data_key, blob_id, header)

    def seal(self, index: int, plaintext: bytes | memoryview, last: bool) -> bytes:
        nonce = self._prefix + _NONCE_SUFFIX.pack(index, last)
        return self._aead.encrypt(nonce, plaintext, self.header)

    def open(self, index: int, sealed: bytes | memoryview, last: bool) -> bytes:
        nonce = self._prefix + _NONCE_SUFFIX.pack(index, last)
        try:
            return self._aead.decrypt(nonce, sealed, self.header)
        except InvalidTag:
            raise IntegrityError(
                f"blob {self.blob_id!r}: segment {index} failed authentication (tampered, "
                "truncated, reordered, from another blob, or wrong key or blob id)"
            ) from None


def _layout(payload: int, segment_size: int, blob_id: str, first_index: int = 0) -> tuple[int, int]:
    """Split ``payload`` sealed bytes (starting at segment ``first_index``) into segments.

    Returns (number of segments, sealed length of the final one).
    """
    stored = segment_size + TAG_SIZE
    count = max(1, -(-payload // stored))
    last_len = payload - (count - 1) * stored
    # Only a wholly empty blob ends in an empty segment; anything else is a truncation.
    if last_len < TAG_SIZE or (last_len == TAG_SIZE and first_index + count > 1):
        raise IntegrityError(f"blob {blob_id!r} is truncated at segment {first_index + count - 1}")
    if first_index + count > _MAX_SEGMENTS:
        raise IntegrityError(f"blob {blob_id!r} has too many segments")
    return count, last_len


def _read_up_to(src: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, fewer only at end of file (raw streams may return short reads)."""
    data = src.read(size) or b""
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = src.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _write_all(dst: BinaryIO, data: bytes) -> None:
    written = dst.write(data)
    # Buffered files always write everything; raw ones may not.
    if written is not None and written < len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[dst.write(view) or 0 :]


@dataclass(frozen=True, slots=True)
class WriterCheckpoint:
    """What, besides the blob file itself, a :class:`SegmentedWriter` needs to resume.

    ``segments`` full segments follow the header on disk; ``tail`` is the plaintext the
    writer still holds back (0..segment_size bytes; non-empty once any segment is written,
    because a writer always keeps the latest data for the final segment). ``tail`` is
    plaintext: keep it encrypted.
    """

    segment_size: int
    segments: int
    tail: bytes

    def __post_init__(self) -> None:
        _check_segment_size(self.segment_size)
        if not isinstance(self.segments, int) or not 0 <= self.segments < _MAX_SEGMENTS:
            raise ValueError("segments must be a non-negative int")
        if len(self.tail) > self.segment_size:
            raise ValueError("tail is longer than one segment")
        if self.segments and not self.tail:
            # close() would then write an empty final segment after full ones: unreadable
            raise ValueError("a checkpoint after full segments must hold a non-empty tail")

    @property
    def plaintext_size(self) -> int:
        """Plaintext bytes written so far (on disk and held back)."""
        return self.segments * self.segment_size + len(self.tail)

    @property
    def stored_size(self) -> int:
        """Length of the blob file the checkpoint describes (header and full segments)."""
        return HEADER_SIZE + self.segments * (self.segment_size + TAG_SIZE)

    def __repr__(self) -> str:
        # never the tail: it is plaintext
        return (
            f"WriterCheckpoint(segment_size={self.segment_size}, segments={self.segments}, "
            f"tail=<{len(self.tail)} bytes>)"
        )


class SegmentedWriter:
    """Encrypts a stream into a segmented blob, buffering at most one segment.

    Use as a context manager. ``close()`` writes the final segment; if the ``with`` block
    raises, the blob is left *without* its final segment (see :meth:`abort`) so that a
    half-written blob can never pass as a complete one. ``dst`` is not closed.

    A writer can be suspended with :meth:`checkpoint` and continued, in another request or
    process, with :meth:`resume` (see the module documentation).
    """

    def __init__(
        self,
        data_key: bytes,
        dst: BinaryIO,
        *,
        blob_id: str,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        self._cipher = _BlobCipher.create(data_key, blob_id, segment_size)
        self._setup(dst, index=0, tail=b"", position=HEADER_SIZE, stale_end=0)
        _write_all(dst, self._cipher.header)

    def _setup(
        self, dst: BinaryIO, *, index: int, tail: bytes, position: int, stale_end: int
    ) -> None:
        self._segment_size = self._cipher.segment_size
        self._dst = dst
        self._buffer = bytearray(tail)
        self._index = index
        self._plaintext_size = index * self._segment_size + len(tail)
        self._closed = False
        # file offset of the next segment, and the end of the bytes a previous, interrupted
        # attempt left there (0 for a fresh writer): below it every seal is checked
        self._position = position
        self._stale_end = stale_end

    @classmethod
    def resume(
        cls,
        data_key: bytes,
        dst: BinaryIO,
        *,
        blob_id: str,
        checkpoint: WriterCheckpoint,
    ) -> SegmentedWriter:
        """Continue the blob in ``dst`` from ``checkpoint``.

        ``dst`` must be readable, writable and seekable (a file opened ``"r+b"``) and hold
        the blob from offset 0. The header is read back from it, and the last full segment
        before the checkpoint is authenticated, so a wrong key or blob id, a tampered header
        or a file shorter than the checkpoint fail here (IntegrityError) rather than at
        read time. Bytes past the checkpoint are kept as stale (see the module docs).
        """
        dst.seek(0)
        header = _read_up_to(dst, HEADER_SIZE)
        cipher = _BlobCipher(data_key, blob_id, header)
        if cipher.segment_size != checkpoint.segment_size:
            raise IntegrityError(f"blob {blob_id!r}: segment size differs from the checkpoint")
        stale_end = dst.seek(0, io.SEEK_END)
        position = checkpoint.stored_size
        if stale_end < position:
            raise IntegrityError(f"blob {blob_id!r} is shorter than its checkpoint")
        if checkpoint.segments:
            stored = cipher.segment_size + TAG_SIZE
            dst.seek(position - stored)
            cipher.open(checkpoint.segments - 1, _read_up_to(dst, stored), False)
        dst.seek(position)
        writer = cls.__new__(cls)
        writer._cipher = cipher
        writer._setup(
            dst,
            index=checkpoint.segments,
            tail=checkpoint.tail,
            position=position,
            stale_end=stale_end if stale_end > position else 0,
        )
        return writer

    @property
    def plaintext_size(self) -> int:
        """Number of plaintext bytes written so far (the blob size once closed)."""
        return self._plaintext_size

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def header(self) -> bytes:
        return self._cipher.header

    def checkpoint(self) -> WriterCheckpoint:
        """The state to :meth:`resume` from; flushes ``dst`` (making it durable is the
        caller's part: fsync before recording the checkpoint)."""
        if self._closed:
            raise ValueError("checkpoint of a closed SegmentedWriter")
        flush = getattr(self._dst, "flush", None)
        if flush is not None:
            flush()
        return WriterCheckpoint(self._segment_size, self._index, bytes(self._buffer))

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt ``data``; full segments are emitted as soon as more data follows them."""
        if self._closed:
            raise ValueError("write to a closed SegmentedWriter")
        view = memoryview(data).cast("B")
        total = len(view)
        size = self._segment_size
        buffer = self._buffer
        pos = 0
        # A full segment is held back until more data arrives: only close() may mark a
        # segment as the last one, and the last segment must never be empty (unless the
        # blob is), so the layout stays a function of the ciphertext size.
        try:
            while pos < total:
                if len(buffer) == size:
                    self._emit(buffer, last=False)
                    buffer.clear()
                if not buffer and total - pos > size:
                    # Whole segments straight from the caller's memory: no copy.
                    self._emit(view[pos : pos + size], last=False)
                    pos += size
                    continue
                take = min(size - len(buffer), total - pos)
                buffer += view[pos : pos + take]
                pos += take
        except BaseException:
            # State is unknown after a failed write to dst; never finish this blob.
            self.abort()
            raise
        self._plaintext_size += total
        return total

    def _emit(self, plaintext: bytes | bytearray | memoryview, *, last: bool) -> None:
        if self._index >= _MAX_SEGMENTS:
            raise ValueError(f"blob {self._cipher.blob_id!r} exceeds the maximum size")
        sealed = self._cipher.seal(self._index, plaintext, last)
        if self._position < self._stale_end:
            self._check_stale(sealed, last)
        _write_all(self._dst, sealed)
        self._index += 1
        self._position += len(sealed)

    def _check_stale(self, sealed: bytes, last: bool) -> None:
        """Refuse to seal over stale bytes unless that cannot reuse a nonce (module docs)."""
        dst = self._dst
        stored = self._segment_size + TAG_SIZE
        dst.seek(self._position)
        stale = _read_up_to(dst, min(stored, self._stale_end - self._position))
        dst.seek(self._position)
        common = min(len(stale), len(sealed))
        if hmac.compare_digest(stale[:common], sealed[:common]):
            return
        # Different bytes. Harmless only if the stale segment was sealed under the other
        # last flag, i.e. another nonce: a non-final segment is always full length, a
        # final one is whatever remains of the stale bytes. Torn or foreign bytes are
        # refused: we cannot tell which nonce sealed them.
        if last:
            other = stale if len(stale) == stored else b""
        else:
            other = stale
        if len(other) >= TAG_SIZE:
            try:
                self._cipher.open(self._index, other, not last)
            except IntegrityError:
                pass
            else:
                return
        raise ConflictError(
            f"blob {self._cipher.blob_id!r}: segment {self._index} was sealed before with "
            "other content; resuming must resend the same data (nonce reuse refused)"
        )

    def close(self) -> None:
        """Write the final segment (with the last flag) and flush ``dst``."""
        if self._closed:
            return
        try:
            self._emit(self._buffer, last=True)
            if self._stale_end > self._position:
                # stale segments past the end would make the blob unreadable
                self._dst.truncate(self._position)
        except BaseException:
            self.abort()
            raise
        self._buffer = bytearray()
        self._closed = True
        flush = getattr(self._dst, "flush", None)
        if flush is not None:
            flush()

    def abort(self) -> None:
        """Stop without a final segment: the partial blob will fail to read as truncated."""
        self._buffer = bytearray()
        self._closed = True

    def __enter__(self) -> SegmentedWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        return f"SegmentedWriter(blob_id={self._cipher.blob_id!r}, closed={self._closed})"


def encrypt_file(
    data_key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    blob_id: str,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> int:
    """Encrypt all of ``src`` into ``dst``; return the plaintext size."""
    with SegmentedWriter(data_key, dst, blob_id=blob_id, segment_size=segment_size) as writer:
        while chunk := src.read(segment_size * 16):
            writer.write(chunk)
    return writer.plaintext_size


class SegmentedReader(io.RawIOBase):
    """Random-access, read-only view of a segmented blob's plaintext.

    Opening checks the header and authenticates the final segment, so ``size`` is
    trustworthy and a truncated blob, a wrong key or a wrong blob id fail right away. Every
    read authenticates the segments it touches. It is a raw, seekable file object: wrap it
    in :class:`io.BufferedReader` to hand it to libraries. Not thread-safe (it seeks
    ``src``); ``src`` must hold the blob from offset 0 and is not closed by :meth:`close`.
    """

    def __init__(
        self,
        data_key: bytes,
        src: BinaryIO,
        *,
        blob_id: str,
        size: int | None = None,
    ) -> None:
        super().__init__()
        self._src = src
        self._pos = 0
        # One decrypted segment is kept: sequential small reads (BufferedReader, TIFF
        # parsers) then cost one decryption per segment rather than one per read.
        self._cached_index = -1
        self._cached = b""
        if size is None:
            size = src.seek(0, io.SEEK_END)
        src.seek(0)
        self._cipher = _BlobCipher(data_key, blob_id, _read_up_to(src, HEADER_SIZE))
        self._segment_size = self._cipher.segment_size
        self._stored = self._segment_size + TAG_SIZE
        self._count, self._last_len = _layout(size - HEADER_SIZE, self._segment_size, blob_id)
        self._size = (self._count - 1) * self._segment_size + self._last_len - TAG_SIZE
        last = self._count - 1
        self._cached = self._fetch(last, last)[0]
        self._cached_index = last

    @property
    def size(self) -> int:
        """Plaintext length in bytes."""
        return self._size

    @property
    def blob_id(self) -> str:
        return self._cipher.blob_id

    def _fetch(self, first: int, last: int) -> list[bytes]:
        """Read segments first..last with one read call and decrypt each."""
        stored = self._stored
        begin = HEADER_SIZE + first * stored
        if last == self._count - 1:
            end = HEADER_SIZE + last * stored + self._last_len
        else:
            end = begin + (last - first + 1) * stored
        self._src.seek(begin)
        data = self._src.read(end - begin)
        if len(data) != end - begin:
            data = data + _read_up_to(self._src, end - begin - len(data))
            if len(data) != end - begin:
                raise IntegrityError(f"blob {self.blob_id!r} is truncated at segment {last}")
        if first == last:
            return [self._cipher.open(first, data, first == self._count - 1)]
        view = memoryview(data)
        final = self._count - 1
        open_segment = self._cipher.open
        return [
            open_segment(i, view[(i - first) * stored : (i - first + 1) * stored], i == final)
            for i in range(first, last + 1)
        ]

    def read_at(self, offset: int, length: int) -> bytes:
        """Return up to ``length`` plaintext bytes from ``offset`` (fewer at end of blob)."""
        if self.closed:
            raise ValueError("I/O operation on closed SegmentedReader")
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be non-negative")
        end = min(offset + length, self._size)
        if offset >= end:
            return b""
        size = self._segment_size
        first = offset // size
        last = (end - 1) // size
        if first == last:
            if first != self._cached_index:
                self._cached = self._fetch(first, first)[0]
                self._cached_index = first
            base = first * size
            return self._cached[offset - base : end - base]
        if first == self._cached_index:
            parts = [self._cached, *self._fetch(first + 1, last)]
        else:
            parts = self._fetch(first, last)
        self._cached = parts[-1]
        self._cached_index = last
        parts[0] = parts[0][offset - first * size :]
        parts[-1] = parts[-1][: end - last * size]
        return b"".join(parts)

    def read_all(self) -> bytes:
        """Return the whole plaintext (for large blobs prefer :func:`iter_plaintext`)."""
        return self.read_at(0, self._size)

    # -- io.RawIOBase ----------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed SegmentedReader")
        if whence == io.SEEK_SET:
            new = pos
        elif whence == io.SEEK_CUR:
            new = self._pos + pos
        elif whence == io.SEEK_END:
            new = self._size + pos
        else:
            raise ValueError(f"invalid whence ({whence})")
        if new < 0:
            raise ValueError("negative seek position")
        self._pos = new
        return new

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = max(self._size - self._pos, 0)
        data = self.read_at(self._pos, size)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._cached = b""
        self._cached_index = -1
        super().close()

    def __repr__(self) -> str:
        return f"SegmentedReader(blob_id={self._cipher.blob_id!r}, size={self._size})"


def iter_plaintext(
    data_key: bytes,
    src: BinaryIO,
    *,
    blob_id: str,
    chunk_segments: int = 16,
) -> Iterator[bytes]:
    """Yield the plaintext of a blob read sequentially from ``src`` (need not be seekable).

    Memory stays at about ``chunk_segments`` segments. Each yielded chunk is authenticated,
    but truncation is only detected at the end: a consumer must treat the stream as valid
    only if the generator finishes without IntegrityError.
    """
    if chunk_segments < 1:
        raise ValueError("chunk_segments must be at least 1")
    cipher = _BlobCipher(data_key, blob_id, _read_up_to(src, HEADER_SIZE))
    stored = cipher.segment_size + TAG_SIZE
    want = chunk_segments * stored
    index = 0
    carry = b""
    while True:
        # One byte beyond a full chunk proves none of its segments is the final one.
        data = carry + _read_up_to(src, want + 1 - len(carry))
        if len(data) > want:
            view = memoryview(data)
            chunk = [
                cipher.open(index + i, view[i * stored : (i + 1) * stored], False)
                for i in range(chunk_segments)
            ]
            index += chunk_segments
            carry = data[want:]
            yield b"".join(chunk)
            continue
        count, _ = _layout(len(data), cipher.segment_size, blob_id, first_index=index)
        view = memoryview(data)
        chunk = [
            cipher.open(index + i, view[i * stored : (i + 1) * stored], i == count - 1)
            for i in range(count)
        ]
        tail = b"".join(chunk)
        if tail:
            yield tail
        return
