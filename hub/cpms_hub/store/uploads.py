"""Chunked, resumable uploads of large files (whole-slide images, DICOM series) into a case.

A file of up to :data:`MAX_UPLOAD_SIZE` bytes arrives as a sequence of requests: *create*
(name, declared size, media type), one *chunk* per :data:`CHUNK_SIZE` bytes at the offset
the store expects, then *complete*. Any request may fail or the service may restart in
between; the client asks for the upload's status and carries on from ``received``.

Where an upload lives while it is open
--------------------------------------

* The ciphertext: a *partial* blob file ``<blob folder>/uploads/<upload id>.part`` (0600,
  in a 0700 folder), written by a :class:`~cpms_hub.crypto.segmented.SegmentedWriter`
  whose blob id is the upload id, which also becomes the file id. Nothing in it is
  plaintext, and only full segments ever reach it.
* The rest of the writer's state: an :class:`~cpms_hub.store.schema.UploadRow` holding
  ``received`` and the held-back *tail* (the last, at most one segment of plaintext, which
  cannot be sealed before the store knows whether it is the final segment). The tail is
  encrypted with the case's field cipher, bound to table ``uploads``, the upload id and
  the field ``tail@<received>``, so a tail can never be paired with another byte count.
  Together with the header in the partial file this is a
  :class:`~cpms_hub.crypto.segmented.WriterCheckpoint`.

A chunk request collects its body in memory (one chunk, 8 MiB, never the file), and only
once all of it has arrived resumes the writer, feeds it the chunk, checkpoints it, makes
the file durable (fsync) and then commits the new ``received`` and tail. A request cut
short (client gone, wrong length) therefore changes nothing, on disk or in the database,
and the next attempt at the same offset starts from the same state. Should the server
fail between its write and its commit (disk error, crash), the sealed bytes past the
checkpoint stay as *stale* bytes that a retry may only overwrite with identical ones:
the segmented writer refuses to seal other data under a nonce already used (see its
docs). Erasing a case crypto-shreds its open uploads too: partial and tail are under its
key.

Concurrency: writing a chunk or completing holds an exclusive ``flock`` on the partial file
(not waiting: a second writer gets :class:`UploadBusyError`, a 409 to retry shortly) and
re-reads the row once it holds it; the final update is conditional on the row being still
open at the expected offset, so an abort in between wins cleanly. The lock is not held
while a body is arriving, so a dead connection cannot block the upload.

Completion seals the final segment, authenticates and hashes (SHA-256) the whole blob by
streaming it back, moves the file into the blob backend under its final name, and in one
transaction records the :class:`~cpms_hub.store.schema.BlobRow`, marks the upload complete
and audits it. If the transaction fails the file is moved back and the upload stays open;
a crash between the move and the commit is repaired by the next request. A repeated
*complete* returns the same file (the client may have lost the first answer). A blob that
fails authentication marks the upload ``aborted`` and its partial is removed.

Audit: create, complete and abort are audited (and every denial); chunks and status reads
are not, so a 2 GB file adds two entries rather than hundreds.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from cpms_hub.crypto import FieldCipher
from cpms_hub.crypto.segmented import (
    DEFAULT_SEGMENT_SIZE,
    TAG_SIZE,
    SegmentedWriter,
    WriterCheckpoint,
    iter_plaintext,
)
from cpms_hub.domain import (
    CaseFile,
    ConflictError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from cpms_hub.domain.audit import AuditOutcome

from .audit import AuditTrail
from .blobs import LocalBlobBackend
from .cases import AuditContext, Authorize, _is_uuid, _ref, _utc
from .database import session_scope
from .keys import DataKeys, case_key_id
from .schema import BlobRow, CaseRow, UploadRow

__all__ = [
    "CHUNK_SIZE",
    "MAX_UPLOAD_SIZE",
    "UploadBusyError",
    "UploadStatus",
    "UploadStore",
]

#: bytes per chunk request: 128 segments of 64 KiB. Large enough that per-request costs
#: (authorisation, two transactions, an fsync) stay small, small enough to resend after a
#: drop and to hold in memory while it arrives
CHUNK_SIZE = 8 * 1024 * 1024
#: largest declared upload by default (16 GiB)
MAX_UPLOAD_SIZE = 16 * 1024**3

OPEN, COMPLETE, ABORTED = "open", "complete", "aborted"

_PARTIAL_DIR = "uploads"
_PARTIAL_SUFFIX = ".part"
#: room kept free on the blob volume beyond a new upload's own size
_FREE_SPACE_RESERVE = 256 * 1024 * 1024
#: partial files without a row younger than this may be an upload being created
_ORPHAN_GRACE_SECONDS = 3600
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}")


class UploadBusyError(ConflictError):
    """Another request is writing this upload right now; retry in a few seconds."""


@dataclass(frozen=True, slots=True)
class UploadStatus:
    """Where an upload stands. Holds no patient data (the name stays encrypted)."""

    id: str
    case_id: str
    size: int
    received: int
    chunk_size: int
    status: str
    created_by: str
    created_at: datetime
    updated_at: datetime


class UploadStore:
    """Open, fill, complete and abort uploads; the counterpart of ``CaseStore.add_file``."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        data_keys: DataKeys,
        blobs: LocalBlobBackend,
        audit: AuditTrail,
        *,
        chunk_size: int = CHUNK_SIZE,
        max_size: int = MAX_UPLOAD_SIZE,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        max_open_per_user: int = 32,
    ) -> None:
        if chunk_size <= 0 or chunk_size % segment_size:
            # whole segments per chunk keep the tail at exactly one segment between requests
            raise ValueError("chunk_size must be a positive multiple of segment_size")
        self.sessions = session_factory
        self.keys = data_keys
        self.blobs = blobs
        self.audit = audit
        self.chunk_size = chunk_size
        self.max_size = max_size
        self.segment_size = segment_size
        self.max_open_per_user = max_open_per_user
        self.partial_dir = Path(blobs.root) / _PARTIAL_DIR
        self.partial_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.partial_dir, 0o700)

    # -- paths and locks ----------------------------------------------------------------

    def _partial(self, upload_id: str) -> Path:
        uuid.UUID(upload_id)  # never build a path from anything but a UUID
        return self.partial_dir / (upload_id + _PARTIAL_SUFFIX)

    def _final(self, upload_id: str) -> Path:
        # The backend has no "adopt this file" call; moving the finished partial into place
        # (same volume) avoids copying gigabytes. Its private path scheme is used for that.
        return self.blobs._path(upload_id)  # noqa: SLF001

    @contextmanager
    def _locked(self, upload_id: str) -> Iterator[BinaryIO]:
        """The partial file, opened r+b under an exclusive flock held for the block."""
        path = self._partial(upload_id)
        try:
            fh = path.open("r+b")
        except FileNotFoundError:
            fh = self._recover(upload_id)
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise UploadBusyError(
                    "upload is busy",
                    reasons=("upload: another request is still writing it; retry later",),
                ) from None
            # the file may have been aborted (unlinked) or completed (moved) between our
            # open and our lock: then we hold a lock on an inode nobody else will use
            try:
                same = os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                raise ConflictError(
                    "upload changed", reasons=("upload: was completed or aborted meanwhile",)
                )
            yield fh
        finally:
            fh.close()  # releases the lock

    def _recover(self, upload_id: str) -> BinaryIO:
        """Move back a blob a crashed *complete* moved into place but never recorded."""
        final = self._final(upload_id)
        gone = ConflictError(
            "upload data missing",
            reasons=("upload: its data is gone (completed, aborted or lost); check its status",),
        )
        try:
            fh = final.open("r+b")
        except FileNotFoundError:
            raise gone from None
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                # a complete is running right now and will finish or move it back itself
                raise UploadBusyError(
                    "upload is busy", reasons=("upload: being completed; retry later",)
                ) from None
            with session_scope(self.sessions, write=False) as s:
                recorded = s.get(BlobRow, upload_id) is not None
                row = s.get(UploadRow, upload_id)
                still_open = row is not None and row.status == OPEN
            if recorded or not still_open:
                raise gone
            os.replace(final, self._partial(upload_id))
        finally:
            fh.close()
        return self._partial(upload_id).open("r+b")

    # -- authorisation and rows ---------------------------------------------------------

    def _load(
        self,
        s: Session,
        case_id: str,
        upload_id: str,
        authorize: Authorize,
        ctx: AuditContext,
        action: str,
    ) -> UploadRow:
        case = self._case(s, case_id, authorize, ctx, action)
        row = s.get(UploadRow, upload_id) if _is_uuid(upload_id) else None
        # checked after authorisation, so a stranger cannot probe for upload ids
        if row is None or row.case_id != case.id:
            raise NotFoundError("no such upload in this case")
        return row

    def _case(
        self, s: Session, case_id: str, authorize: Authorize, ctx: AuditContext, action: str
    ) -> CaseRow:
        case = s.get(CaseRow, case_id) if _is_uuid(case_id) else None
        if case is None:
            raise NotFoundError("no such case")
        verdict = authorize(_ref(case))
        if not verdict.allowed:
            # in this transaction: a second one would wait on our own write lock
            self.audit.append(
                s,
                actor=ctx.actor,
                action=action,
                outcome=AuditOutcome.DENIED,
                client=ctx.client,
                case_id=case.id,
                detail="; ".join(verdict.reasons)[:500],
            )
            s.commit()
            raise PermissionDeniedError("not allowed", reasons=tuple(verdict.reasons))
        return case

    def _status(self, row: UploadRow) -> UploadStatus:
        return UploadStatus(
            id=row.id,
            case_id=row.case_id,
            size=row.size,
            received=row.received,
            chunk_size=self.chunk_size,
            status=row.status,
            created_by=row.created_by,
            created_at=_utc(row.created_at),
            updated_at=_utc(row.updated_at),
        )

    @staticmethod
    def _expect_open(row: UploadRow) -> None:
        if row.status != OPEN:
            raise ConflictError(
                f"upload is {row.status}", reasons=(f"upload: is {row.status}, not open",)
            )

    @staticmethod
    def _tail_field(received: int) -> str:
        return f"tail@{received}"

    def _checkpoint(self, cipher: FieldCipher, row: UploadRow) -> WriterCheckpoint:
        tail = b""
        if row.tail_enc is not None:
            tail = cipher.decrypt(
                row.tail_enc,
                table="uploads",
                row_id=row.id,
                field=self._tail_field(row.received),
            )
        segments, rest = divmod(row.received - len(tail), row.segment_size)
        try:
            if rest:
                raise ValueError("received is not whole segments plus the tail")
            return WriterCheckpoint(row.segment_size, segments, tail)
        except ValueError:
            raise IntegrityError(f"upload {row.id}: stored state is inconsistent") from None

    def _reread(self, upload_id: str, received: int) -> tuple[UploadRow, FieldCipher]:
        """The row as it is now that we hold the file lock, and the case's cipher."""
        with session_scope(self.sessions, write=False) as s:
            row = s.get(UploadRow, upload_id)
            if row is None:
                raise ConflictError("upload gone", reasons=("upload: was aborted meanwhile",))
            self._expect_open(row)
            if row.received != received:
                raise _offset_conflict(row.received)
            cipher = self.keys.cipher(s, case_key_id(row.case_id))
            # detached, so the read-only scope's rollback does not expire it
            s.expunge(row)
            return row, cipher

    # -- the operations -----------------------------------------------------------------

    def create(
        self,
        case_id: str,
        *,
        name: str,
        size: int,
        media_type: str,
        authorize: Authorize,
        ctx: AuditContext,
    ) -> UploadStatus:
        """Declare an upload of ``size`` bytes; its partial file starts with the header."""
        if (
            not isinstance(name, str)
            or not name
            or len(name) > 255
            or "/" in name
            or "\x00" in name
        ):
            raise ValidationError("name", "must be a file name of 1-255 characters")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValidationError("size", "must be a whole number of bytes, at least 1")
        if size > self.max_size:
            raise ValidationError("size", f"must be at most {self.max_size} bytes")
        # parameters (charset=...) are dropped, as POST /files does
        media_type = media_type.split(";")[0].strip().lower() if isinstance(media_type, str) else ""
        if not _MEDIA_TYPE.fullmatch(media_type) or len(media_type) > 100:
            raise ValidationError("media_type", "must be a media type such as image/tiff")
        with session_scope(self.sessions) as s:
            self._case(s, case_id, authorize, ctx, "upload.create")
            open_count = s.scalar(
                select(func.count())
                .select_from(UploadRow)
                .where(UploadRow.created_by == ctx.actor, UploadRow.status == OPEN)
            )
            if open_count >= self.max_open_per_user:
                raise ConflictError(
                    "too many open uploads",
                    reasons=(
                        f"upload: at most {self.max_open_per_user} open uploads per user; "
                        "complete or abort some first",
                    ),
                )
            data_key = self.keys.get(s, case_key_id(case_id))
        stored = size + -(-size // self.segment_size) * TAG_SIZE
        if shutil.disk_usage(self.partial_dir).free < stored + _FREE_SPACE_RESERVE:
            # refuse now rather than after hours of uploading
            raise ValidationError("size", "is more than the store has room for")
        upload_id = str(uuid.uuid4())
        path = self._partial(upload_id)
        now = datetime.now(UTC)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                writer = SegmentedWriter(
                    data_key, fh, blob_id=upload_id, segment_size=self.segment_size
                )
                writer.checkpoint()
                os.fsync(fh.fileno())
            with session_scope(self.sessions) as s:
                cipher = FieldCipher(data_key)
                row = UploadRow(
                    id=upload_id,
                    case_id=case_id,
                    created_by=ctx.actor,
                    name_enc=cipher.encrypt(name, table="uploads", row_id=upload_id, field="name"),
                    media_type=media_type,
                    size=size,
                    received=0,
                    segment_size=self.segment_size,
                    tail_enc=None,
                    status=OPEN,
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
                self.audit.append(
                    s,
                    actor=ctx.actor,
                    action="upload.create",
                    outcome=AuditOutcome.ALLOWED,
                    client=ctx.client,
                    case_id=case_id,
                    detail=f"upload={upload_id} bytes={size}",
                )
                s.flush()
                return self._status(row)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def status(
        self, case_id: str, upload_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> UploadStatus:
        """``received``, ``size`` and ``status``: where a client resumes (not audited)."""
        with session_scope(self.sessions) as s:
            return self._status(self._load(s, case_id, upload_id, authorize, ctx, "upload.status"))

    def append_chunk(
        self,
        case_id: str,
        upload_id: str,
        offset: int,
        chunks: Iterable[bytes],
        *,
        authorize: Authorize,
        ctx: AuditContext,
        length: int | None = None,
    ) -> UploadStatus:
        """Accept the chunk starting at ``offset`` (which must equal ``received``).

        ``chunks`` yields the body as it arrives; it must add up to exactly
        ``min(chunk_size, size - offset)`` bytes. ``length``, when the request declared
        one, lets a wrong length fail before any byte is read. If ``chunks`` raises (the
        client went away), nothing is recorded and the exception propagates.

        The chunk is collected in memory (at most ``chunk_size`` bytes) and sealed only
        once all of it has arrived: a request cut short then leaves the partial file
        untouched and burns no nonce, and the file lock is held only while writing, not
        while a slow or silently dead client trickles its body in.
        """
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValidationError("offset", "must be a non-negative whole number")
        with session_scope(self.sessions) as s:
            row = self._load(s, case_id, upload_id, authorize, ctx, "upload.chunk")
            self._expect_open(row)
            if offset != row.received:
                raise _offset_conflict(row.received)
            expected = min(self.chunk_size, row.size - offset)
            if expected <= 0:
                raise ConflictError(
                    "upload is full", reasons=("upload: every byte has arrived; complete it",)
                )
            if length is not None and length != expected:
                raise _chunk_length(expected, offset)
            data_key = self.keys.get(s, case_key_id(case_id))
        body = bytearray(expected)
        view = memoryview(body)
        got = 0
        for piece in chunks:
            if not piece:
                continue
            if got + len(piece) > expected:
                raise ValidationError("chunk", f"is longer than {expected} bytes")
            view[got : got + len(piece)] = piece
            got += len(piece)
        if got != expected:
            raise _chunk_length(expected, offset, got)
        with self._locked(upload_id) as fh:
            row, cipher = self._reread(upload_id, offset)
            writer = self._resume(data_key, fh, cipher, row, ctx, "upload.chunk")
            try:
                writer.write(view)
            except ConflictError:
                # only after a failure between our write and our commit (disk error, crash)
                # and a resend with other data: see the nonce-reuse guard in segmented.py
                raise ConflictError(
                    "chunk differs",
                    reasons=(
                        f"chunk: differs from the data received before at offset {offset}; "
                        "resend the same data or abort the upload",
                    ),
                ) from None
            checkpoint = writer.checkpoint()
            # durable before it is recorded: a row ahead of its file would lose data
            os.fsync(fh.fileno())
            received = offset + got
            with session_scope(self.sessions) as s:
                done = s.execute(
                    update(UploadRow)
                    .where(
                        UploadRow.id == upload_id,
                        UploadRow.status == OPEN,
                        UploadRow.received == offset,
                    )
                    .values(
                        received=received,
                        tail_enc=cipher.encrypt(
                            checkpoint.tail,
                            table="uploads",
                            row_id=upload_id,
                            field=self._tail_field(received),
                        ),
                        updated_at=datetime.now(UTC),
                    )
                )
                if done.rowcount != 1:
                    raise ConflictError("upload gone", reasons=("upload: was aborted meanwhile",))
                return self._status(s.get(UploadRow, upload_id, populate_existing=True))

    def complete(
        self, case_id: str, upload_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> CaseFile:
        """Finish the blob and attach it to the case as a file (id = the upload id)."""
        with session_scope(self.sessions) as s:
            row = self._load(s, case_id, upload_id, authorize, ctx, "upload.complete")
            if row.status == COMPLETE:
                # the client lost our first answer: give it again, it is the same file
                blob = s.get(BlobRow, upload_id)
                if blob is None:
                    raise NotFoundError("the file of this upload was removed")
                return self._case_file(FieldCipher(self.keys.get(s, case_key_id(case_id))), blob)
            self._expect_open(row)
            if row.received != row.size:
                raise ValidationError(
                    "size", f"only {row.received} of {row.size} bytes have arrived"
                )
            data_key = self.keys.get(s, case_key_id(case_id))
        with self._locked(upload_id) as fh:
            row, cipher = self._reread(upload_id, row.size)
            name = cipher.decrypt_text(
                row.name_enc, table="uploads", row_id=upload_id, field="name"
            )
            self._resume(data_key, fh, cipher, row, ctx, "upload.complete").close()
            os.fsync(fh.fileno())
            try:
                digest, size = _hash_blob(data_key, fh, upload_id)
                if size != row.size:
                    raise IntegrityError(f"upload {upload_id}: blob holds {size} bytes")
            except IntegrityError:
                self._fail(upload_id, row.case_id, ctx, "upload.complete")
                raise
            stored_size = os.fstat(fh.fileno()).st_size
            final = self._final(upload_id)
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.replace(self._partial(upload_id), final)
            _fsync_dir(final.parent)
            now = datetime.now(UTC)
            try:
                with session_scope(self.sessions) as s:
                    done = s.execute(
                        update(UploadRow)
                        .where(UploadRow.id == upload_id, UploadRow.status == OPEN)
                        .values(status=COMPLETE, tail_enc=None, updated_at=now)
                    )
                    if done.rowcount != 1:
                        raise ConflictError(
                            "upload gone", reasons=("upload: was aborted meanwhile",)
                        )
                    ad = {"table": "blobs", "row_id": upload_id}
                    blob = BlobRow(
                        id=upload_id,
                        case_id=row.case_id,
                        name_enc=cipher.encrypt(name, field="name", **ad),
                        media_type=row.media_type,
                        size=size,
                        stored_size=stored_size,
                        segment_size=row.segment_size,
                        sha256_enc=cipher.encrypt(digest, field="sha256", **ad),
                        created_by=row.created_by,
                        created_at=now,
                    )
                    s.add(blob)
                    self.audit.append(
                        s,
                        actor=ctx.actor,
                        action="upload.complete",
                        outcome=AuditOutcome.ALLOWED,
                        client=ctx.client,
                        case_id=row.case_id,
                        detail=f"file={upload_id} bytes={size}",
                    )
            except BaseException:
                # back where it was: the upload is still open and complete can be retried
                os.replace(final, self._partial(upload_id))
                self._drop_if_closed(upload_id)
                raise
        return CaseFile(
            upload_id, row.case_id, name, row.media_type, size, digest, row.created_by, now
        )

    def abort(
        self, case_id: str, upload_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> None:
        """Forget an upload and delete its partial data (a completed file stays)."""
        with session_scope(self.sessions) as s:
            row = self._load(s, case_id, upload_id, authorize, ctx, "upload.abort")
            if row.status == COMPLETE:
                raise ConflictError(
                    "upload is complete",
                    reasons=("upload: is complete; the file belongs to the case now",),
                )
            self.audit.append(
                s,
                actor=ctx.actor,
                action="upload.abort",
                outcome=AuditOutcome.ALLOWED,
                client=ctx.client,
                case_id=row.case_id,
                detail=f"upload={upload_id} bytes={row.received}/{row.size}",
            )
            s.delete(row)
        # after the commit: a chunk request still writing finds no row and gives up; its
        # file handle keeps the unlinked inode alive until it closes, then the space is free
        self._partial(upload_id).unlink(missing_ok=True)

    def purge(self, *, idle_for: timedelta, ctx: AuditContext) -> int:
        """Remove uploads idle for ``idle_for`` and partial files with no upload; how many.

        For operators (``cpms-admin``) and after erasing cases: an erased case's upload
        rows go with it, its partial files (unreadable without the key) go here.
        """
        cutoff = datetime.now(UTC) - idle_for
        with session_scope(self.sessions) as s:
            rows = s.scalars(select(UploadRow).where(UploadRow.updated_at < cutoff)).all()
            for row in rows:
                if row.status == OPEN:
                    self.audit.append(
                        s,
                        actor=ctx.actor,
                        action="upload.expire",
                        outcome=AuditOutcome.ALLOWED,
                        client=ctx.client,
                        case_id=row.case_id,
                        detail=f"upload={row.id} bytes={row.received}/{row.size}",
                    )
            removed = [r.id for r in rows]
            if removed:
                s.execute(delete(UploadRow).where(UploadRow.id.in_(removed)))
        for upload_id in removed:
            self._partial(upload_id).unlink(missing_ok=True)
        with session_scope(self.sessions, write=False) as s:
            open_ids = set(s.scalars(select(UploadRow.id).where(UploadRow.status == OPEN)))
        orphans = 0
        for path in self.partial_dir.glob("*" + _PARTIAL_SUFFIX):
            upload_id = path.name.removesuffix(_PARTIAL_SUFFIX)
            try:
                young = time.time() - path.stat().st_mtime < _ORPHAN_GRACE_SECONDS
            except FileNotFoundError:
                continue
            if upload_id not in open_ids and not young:
                path.unlink(missing_ok=True)
                orphans += 1
        return len(removed) + orphans

    # -- helpers ------------------------------------------------------------------------

    def _case_file(self, cipher: FieldCipher, blob: BlobRow) -> CaseFile:
        ad = {"table": "blobs", "row_id": blob.id}
        return CaseFile(
            id=blob.id,
            case_id=blob.case_id,
            name=cipher.decrypt_text(blob.name_enc, field="name", **ad),
            media_type=blob.media_type,
            size=blob.size,
            sha256=cipher.decrypt_text(blob.sha256_enc, field="sha256", **ad),
            created_by=blob.created_by,
            created_at=_utc(blob.created_at),
        )

    def _resume(
        self,
        data_key: bytes,
        fh: BinaryIO,
        cipher: FieldCipher,
        row: UploadRow,
        ctx: AuditContext,
        action: str,
    ) -> SegmentedWriter:
        try:
            return SegmentedWriter.resume(
                data_key, fh, blob_id=row.id, checkpoint=self._checkpoint(cipher, row)
            )
        except IntegrityError:
            # tampered or damaged partial data: no later request could complete it
            self._fail(row.id, row.case_id, ctx, action)
            raise

    def _fail(self, upload_id: str, case_id: str, ctx: AuditContext, action: str) -> None:
        """The blob does not authenticate: it can never be completed, so drop its data."""
        with session_scope(self.sessions) as s:
            s.execute(
                update(UploadRow)
                .where(UploadRow.id == upload_id)
                .values(status=ABORTED, tail_enc=None, updated_at=datetime.now(UTC))
            )
            self.audit.append(
                s,
                actor=ctx.actor,
                action=action,
                outcome=AuditOutcome.FAILED,
                client=ctx.client,
                case_id=case_id,
                detail=f"upload={upload_id} integrity check failed",
            )
        self._partial(upload_id).unlink(missing_ok=True)

    def _drop_if_closed(self, upload_id: str) -> None:
        with session_scope(self.sessions, write=False) as s:
            row = s.get(UploadRow, upload_id)
            gone = row is None or row.status != OPEN
        if gone:
            self._partial(upload_id).unlink(missing_ok=True)


def _offset_conflict(received: int) -> ConflictError:
    # the reason carries the offset to resume from (a client may also ask for the status)
    return ConflictError(
        "wrong offset", reasons=(f"offset: expected {received}", "upload: resume from there")
    )


def _chunk_length(expected: int, offset: int, got: int | None = None) -> ValidationError:
    arrived = "" if got is None else f"; {got} arrived"
    return ValidationError("chunk", f"must be exactly {expected} bytes at offset {offset}{arrived}")


def _hash_blob(data_key: bytes, fh: BinaryIO, blob_id: str) -> tuple[str, int]:
    """SHA-256 and length of the plaintext, authenticating every segment on the way."""
    fh.seek(0)
    digest = hashlib.sha256()
    size = 0
    # 64 segments (4 MiB) per read: few system calls, bounded memory
    for piece in iter_plaintext(data_key, fh, blob_id=blob_id, chunk_segments=64):
        digest.update(piece)
        size += len(piece)
    return digest.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
