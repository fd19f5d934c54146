"""Whole-slide images of a case: de-identified on import, then served as tiles.

A slide starts life as an ordinary uploaded file (``POST .../files``), which still holds
the label and macro photographs and identifying header fields. :meth:`SlideStore.import_slide`
turns it into a slide:

1. the original is decrypted into an anonymous in-memory file (``memfd_create``: no
   plaintext ever reaches a disk; openslide/tifffile-style code wants a path, and
   ``/proc/self/fd/N`` is one), bounded by ``max_bytes``;
2. :func:`~cpms_hub.imaging.deidentify_svs` writes the de-identified copy into a second
   in-memory file, which is checked to open as a pyramid and report itself de-identified;
3. that copy is streamed into a new encrypted blob of the case (``<slide id>.svs``,
   ``image/tiff``), a :class:`SlideRow` is recorded with the import report (names of the
   removed images and fields only, encrypted), and the **original upload is deleted**,
   since it carries the label. If any step fails, nothing of the slide is kept and the
   original stays as it was.

The store does not import :mod:`cpms_hub.imaging` (the layering rule: the store builds on
the domain and crypto only); the service hands it the two imaging entry points it needs,
``deidentify`` (:func:`~cpms_hub.imaging.deidentify_svs`) and ``tile_source``
(:class:`~cpms_hub.imaging.SlideTileSource`), which keeps this module testable with fakes.

The :class:`SlideRow` model lives here, registered on the store's declarative ``Base``, so
that migrations and ``Base.metadata`` see it (migration ``0003`` creates the table); this
module must be imported wherever the full schema is needed (the store package does so).
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Protocol

from sqlalchemy import BigInteger, Float, ForeignKey, LargeBinary, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from cpms_hub.crypto.segmented import SegmentedReader
from cpms_hub.domain import ConflictError, NotFoundError, ValidationError

from .cases import AuditContext, Authorize, CaseStore, _is_uuid
from .database import session_scope
from .keys import case_key_id
from .schema import Base, BlobRow, UTCDateTime

__all__ = [
    "DEFAULT_MAX_SLIDE_BYTES",
    "SLIDE_MEDIA_TYPE",
    "Slide",
    "SlideRow",
    "SlideStore",
    "TileSourceFactory",
]

#: largest original accepted for import: it is held in memory (twice) while de-identified
DEFAULT_MAX_SLIDE_BYTES = 4 * 1024**3
#: media type of the stored, de-identified slide blob
SLIDE_MEDIA_TYPE = "image/tiff"
_COPY = 1024 * 1024


class Deidentify(Protocol):
    """What the store needs of :func:`~cpms_hub.imaging.deidentify_svs`."""

    def __call__(self, src_path: str, dst: BinaryIO, *, name: str | None = None) -> Any: ...


class TileSourceFactory(Protocol):
    """What the store needs of :class:`~cpms_hub.imaging.SlideTileSource` (the class)."""

    def __call__(
        self, fh: BinaryIO, read_at: Callable[[int, int], bytes], *, close: Callable[[], None]
    ) -> Any: ...

    def from_path(self, path: str) -> Any: ...


class SlideRow(Base):
    """A de-identified whole-slide image: a blob of the case plus what import removed."""

    __tablename__ = "slides"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
    # cascade: erasing a case deletes its blobs with a bulk statement; the slide goes too
    blob_id: Mapped[str] = mapped_column(String(36), ForeignKey("blobs.id", ondelete="CASCADE"))
    # no foreign key: the original upload is deleted by the import (it holds the label)
    source_file_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    report_enc: Mapped[bytes] = mapped_column(LargeBinary)
    width: Mapped[int] = mapped_column(BigInteger)
    height: Mapped[int] = mapped_column(BigInteger)
    mpp: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class Slide:
    """A slide as callers see it; the report lists names of removed things, never values."""

    id: str
    case_id: str
    blob_id: str
    source_file_id: str | None
    width: int
    height: int
    mpp: float | None
    levels: int
    kept_images: tuple[str, ...]
    removed_images: tuple[str, ...]
    removed_fields: tuple[str, ...]
    created_by: str
    created_at: datetime


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _report_json(report: Any) -> str:
    return json.dumps(
        {
            "source_format": report.source_format,
            "levels": report.levels,
            "kept_images": list(report.kept_images),
            "removed_images": list(report.removed_images),
            "removed_fields": list(report.removed_fields),
        },
        separators=(",", ":"),
    )


def _memfd(name: str) -> BinaryIO:
    """An anonymous read-write file in memory (Linux); its path is /proc/self/fd/N."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    return os.fdopen(fd, "w+b")


def _chunks(fh: BinaryIO) -> Iterator[bytes]:
    fh.seek(0)
    while chunk := fh.read(_COPY):
        yield chunk


class SlideStore:
    """Slides of cases, on top of a :class:`CaseStore` (same database, keys, blobs, audit)."""

    def __init__(
        self,
        case_store: CaseStore,
        *,
        deidentify: Deidentify,
        tile_source: TileSourceFactory,
        max_bytes: int = DEFAULT_MAX_SLIDE_BYTES,
    ) -> None:
        self.cases = case_store
        self.deidentify = deidentify
        self.tile_source = tile_source
        self.max_bytes = max_bytes

    # -- helpers -----------------------------------------------------------

    def _slide(self, s: Session, row: SlideRow) -> Slide:
        cipher = self.cases._cipher(s, row.case_id)
        report = json.loads(
            cipher.decrypt_text(row.report_enc, table="slides", row_id=row.id, field="report")
        )
        return Slide(
            id=row.id,
            case_id=row.case_id,
            blob_id=row.blob_id,
            source_file_id=row.source_file_id,
            width=row.width,
            height=row.height,
            mpp=row.mpp,
            levels=int(report["levels"]),
            kept_images=tuple(report["kept_images"]),
            removed_images=tuple(report["removed_images"]),
            removed_fields=tuple(report["removed_fields"]),
            created_by=row.created_by,
            created_at=_utc(row.created_at),
        )

    def _slide_row(self, s: Session, case_id: str, slide_id: str) -> SlideRow:
        row = s.get(SlideRow, slide_id) if _is_uuid(slide_id) else None
        if row is None or row.case_id != case_id:
            raise NotFoundError("no such slide in this case")
        return row

    # -- import ------------------------------------------------------------

    def import_slide(
        self, case_id: str, file_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> Slide:
        """De-identify uploaded file ``file_id`` into a new slide; the original is deleted.

        ``authorize`` should decide a *write* (the import replaces a file of the case).
        All or nothing: on any failure the original upload stays and no slide is kept.
        """
        # open_file decides first: nothing about the file is revealed to an outsider
        meta, reader = self.cases.open_file(case_id, file_id, authorize=authorize, ctx=ctx)
        with session_scope(self.cases.sessions, write=False) as s:
            taken = s.scalar(select(SlideRow.id).where(SlideRow.blob_id == file_id))
        if taken is not None:
            reader.close()
            # importing a slide's own blob would delete it, and the slide with it
            raise ConflictError("already a slide", reasons=("file_id: is already a slide",))
        if meta.size > self.max_bytes:
            reader.close()
            raise ValidationError("file", f"is larger than {self.max_bytes} bytes")
        slide_id = str(uuid.uuid4())
        # two memory-only files: plaintext of a slide never touches a disk
        with _memfd("cpms-slide-src") as src, _memfd("cpms-slide-deid") as dst:
            with reader:
                while chunk := reader.read(_COPY):
                    src.write(chunk)
            src.flush()
            # the uploaded name tells one part of a multi-file format (.mrxs, .vms) apart
            report = self.deidentify(f"/proc/self/fd/{src.fileno()}", dst, name=meta.name)
            dst.flush()
            # the result must still open as a pyramid and carry nothing identifying
            check = self.tile_source.from_path(f"/proc/self/fd/{dst.fileno()}")
            try:
                if not check.properties.deidentified:
                    raise ValidationError("slide", "de-identification left associated data")
            finally:
                check.close()
            stored = self.cases.add_file(
                case_id,
                _chunks(dst),
                name=f"{slide_id}.svs",
                media_type=SLIDE_MEDIA_TYPE,
                max_size=self.max_bytes,
                authorize=authorize,
                ctx=ctx,
            )
        now = datetime.now(UTC)
        try:
            with session_scope(self.cases.sessions) as s:
                cipher = self.cases._cipher(s, case_id)
                row = SlideRow(
                    id=slide_id,
                    case_id=case_id,
                    blob_id=stored.id,
                    source_file_id=file_id,
                    report_enc=cipher.encrypt(
                        _report_json(report), table="slides", row_id=slide_id, field="report"
                    ),
                    width=report.width,
                    height=report.height,
                    mpp=report.microns_per_pixel,
                    created_by=ctx.actor,
                    created_at=now,
                )
                s.add(row)
                # the original holds the label photograph: it goes in the same transaction
                gone = s.execute(
                    delete(BlobRow).where(BlobRow.id == file_id, BlobRow.case_id == case_id)
                ).rowcount
                if gone != 1:
                    raise ConflictError("original changed", reasons=("file_id: no longer exists",))
                s.flush()
                slide = self._slide(s, row)
                self.cases._allowed(
                    s,
                    ctx,
                    "slide.import",
                    case_id,
                    detail=f"slide={slide_id} file={stored.id} source={file_id} "
                    f"removed={len(report.removed_images)}+{len(report.removed_fields)}",
                )
        except BaseException:
            self._drop_blob(stored.id)
            raise
        # the row is gone and committed; the ciphertext file follows
        self.cases.blobs.delete(file_id)
        return slide

    def _drop_blob(self, blob_id: str) -> None:
        """Undo the stored copy of a failed import."""
        with session_scope(self.cases.sessions) as s:
            s.execute(delete(BlobRow).where(BlobRow.id == blob_id))
        self.cases.blobs.delete(blob_id)

    # -- reading -----------------------------------------------------------

    def list_slides(self, case_id: str, *, authorize: Authorize, ctx: AuditContext) -> list[Slide]:
        with session_scope(self.cases.sessions) as s:
            row = self.cases._row(s, case_id)
            self.cases._check(s, row, authorize, ctx, "slide.list")
            rows = s.scalars(
                select(SlideRow).where(SlideRow.case_id == case_id).order_by(SlideRow.created_at)
            ).all()
            slides = [self._slide(s, r) for r in rows]
            self.cases._allowed(s, ctx, "slide.list", case_id)
            return slides

    def get_slide(
        self,
        case_id: str,
        slide_id: str,
        *,
        authorize: Authorize,
        ctx: AuditContext,
        action: str = "slide.read",
    ) -> Slide:
        """One slide; ``action`` names the audit entry (the service audits grants by it)."""
        with session_scope(self.cases.sessions) as s:
            case = self.cases._row(s, case_id)
            self.cases._check(s, case, authorize, ctx, action)
            slide = self._slide(s, self._slide_row(s, case_id, slide_id))
            self.cases._allowed(s, ctx, action, case_id, detail=f"slide={slide_id}")
            return slide

    def open_tiles(
        self, case_id: str, slide_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> Any:
        """A ``tile_source`` over the encrypted slide blob (the caller closes it)."""
        with session_scope(self.cases.sessions) as s:
            case = self.cases._row(s, case_id)
            self.cases._check(s, case, authorize, ctx, "slide.open")
            row = self._slide_row(s, case_id, slide_id)
            blob_id = row.blob_id
            key = self.cases.keys.get(s, case_key_id(case_id))
            self.cases._allowed(s, ctx, "slide.open", case_id, detail=f"slide={slide_id}")
        fh = self.cases.blobs.open(blob_id)
        try:
            reader = SegmentedReader(key, fh, blob_id=blob_id)
            buffered = io.BufferedReader(reader, buffer_size=64 * 1024)
        except BaseException:
            fh.close()
            raise

        def close() -> None:
            buffered.close()
            fh.close()

        # built here rather than with from_blob: the blob's file must close with the source
        return self.tile_source(buffered, reader.read_at, close=close)

    def associated(
        self, case_id: str, slide_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> list[str]:
        """Names of the associated images left after de-identification (the thumbnail)."""
        return list(self.get_slide(case_id, slide_id, authorize=authorize, ctx=ctx).kept_images)
