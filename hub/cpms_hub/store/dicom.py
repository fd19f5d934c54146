"""DICOM studies of a case: de-identified instances in encrypted blobs, plus an index.

Import (:meth:`DicomStore.import_file` for an uploaded ``.dcm`` or ``.zip``,
:meth:`DicomStore.store_payloads` for DICOMweb STOW-RS) hands every file to the imaging
layer's ``prepare`` (read with limits, burned-in check, decode, PS3.15 de-identification;
see :mod:`cpms_hub.imaging.dicom_import`), which the service passes in: the store does
not import :mod:`cpms_hub.imaging` (layering rule).

Each instance is all or nothing and the rest of the import proceeds:

* stored: the de-identified Part 10 file becomes an encrypted blob of the case
  (``application/dicom``); when its frames cannot be served from the file as they lie
  (compressed, big-endian, planar or YBR data), the decoded frames become a second blob
  (``application/octet-stream``), so the frame route never decodes; one
  :class:`DicomInstanceRow` indexes both;
* held (possible burned-in text) or refused (a per-file error): nothing is kept.

All rows of one import are written in one transaction with one ``dicom.import`` audit
entry (counts only); if that transaction fails, every blob it wrote is deleted. The new
UIDs are HMAC-derived per case, so importing the same instance again finds it already
stored (reported ``stored`` with a message) instead of duplicating it. The original
upload is deleted after import, like slides, *unless* instances were held: the importer
needs the same ``file_id`` to confirm or mask them.

The index columns (UIDs replaced by import, modality, numbers, frame geometry) hold
nothing identifying; the viewer metadata, the (shifted) study date and descriptions and
the de-identification report are encrypted under the case key (``view_enc``). Secrets for
UIDs and date shifts come from the case's data key (HMAC with their own label): erasing
the case destroys them with everything else.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    delete,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Mapped, Session, mapped_column

from cpms_hub.crypto.segmented import DEFAULT_SEGMENT_SIZE, SegmentedReader, SegmentedWriter
from cpms_hub.domain import ConflictError, CpmsError, NotFoundError, ValidationError

from .cases import AuditContext, Authorize, CaseStore, _is_uuid
from .database import session_scope
from .keys import case_key_id
from .schema import Base, BlobRow, UTCDateTime

__all__ = [
    "DEFAULT_MAX_DICOM_UPLOAD",
    "DICOM_MEDIA_TYPE",
    "DicomInstance",
    "DicomInstanceRow",
    "DicomStore",
]

log = logging.getLogger("cpms.store")

#: largest upload (a .dcm or a .zip) imported at once: it is held in memory
DEFAULT_MAX_DICOM_UPLOAD = 2 * 1024**3
DICOM_MEDIA_TYPE = "application/dicom"
_PIXELS_MEDIA_TYPE = "application/octet-stream"

#: ``prepare(data, secret, confirmed, mask)`` -> prepared or held instance; raises
#: CpmsError for a refused file (cpms_hub.imaging.dicom_import.prepare_instance)
Prepare = Callable[[bytes, bytes, frozenset[str], Mapping[str, Any]], Any]
#: ``items(data)`` -> the files of an upload (cpms_hub.imaging.dicom_import.iter_items)
Items = Callable[[bytes], Iterable[Any]]


class _BlobReader(io.BufferedReader):
    """A buffered reader of a decrypted blob, named by its blob id (readers such as
    pydicom ask a buffered file for its name)."""

    @property
    def name(self) -> str:
        return f"blob:{self.raw.blob_id}"


class DicomInstanceRow(Base):
    """One stored, de-identified DICOM instance of a case."""

    __tablename__ = "dicom_instances"
    # one row per de-identified SOP instance UID in a case (a unique index, not a constraint:
    # both databases then report it the same way)
    __table_args__ = (Index("ix_dicom_instances_case_sop", "case_id", "sop_uid", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
    blob_id: Mapped[str] = mapped_column(String(36), ForeignKey("blobs.id", ondelete="CASCADE"))
    pixel_blob_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("blobs.id", ondelete="CASCADE"), nullable=True
    )
    study_uid: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(String(64), index=True)
    sop_uid: Mapped[str] = mapped_column(String(64))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str] = mapped_column(String(16))
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    frames: Mapped[int] = mapped_column(Integer)
    frame_bytes: Mapped[int] = mapped_column(BigInteger)
    pixel_offset: Mapped[int] = mapped_column(BigInteger)
    view_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class DicomInstance:
    """An indexed instance as the service sees it (``view``: the viewer's metadata)."""

    id: str
    case_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    modality: str
    instance_number: int | None
    frames: int
    frame_bytes: int
    blob_id: str
    #: where frames are read: the decoded-pixels blob, or the file itself
    pixel_blob_id: str
    pixel_offset: int
    view: dict
    summary: dict
    report: dict


def _instance(s: Session, cases: CaseStore, row: DicomInstanceRow) -> DicomInstance:
    cipher = cases._cipher(s, row.case_id)
    doc = json.loads(
        cipher.decrypt_text(row.view_enc, table="dicom_instances", row_id=row.id, field="view")
    )
    return DicomInstance(
        id=row.id,
        case_id=row.case_id,
        study_uid=row.study_uid,
        series_uid=row.series_uid,
        sop_uid=row.sop_uid,
        sop_class_uid=row.sop_class_uid,
        transfer_syntax=row.transfer_syntax,
        modality=row.modality,
        instance_number=row.instance_number,
        frames=row.frames,
        frame_bytes=row.frame_bytes,
        blob_id=row.blob_id,
        pixel_blob_id=row.pixel_blob_id or row.blob_id,
        pixel_offset=row.pixel_offset,
        view=doc["view"],
        summary=doc["summary"],
        report=doc["report"],
    )


def display_order(instances: Sequence[DicomInstance]) -> list[DicomInstance]:
    """Position along the slice normal, then instance number (PS3.3 C.7.6.2)."""

    def key(inst: DicomInstance) -> tuple:
        pos, ori = inst.view.get("position"), inst.view.get("orientation")
        along = 0.0
        if pos and ori:
            r, c = ori[:3], ori[3:]
            normal = (
                r[1] * c[2] - r[2] * c[1],
                r[2] * c[0] - r[0] * c[2],
                r[0] * c[1] - r[1] * c[0],
            )
            along = sum(p * n for p, n in zip(pos, normal, strict=True))
        number = inst.instance_number if inst.instance_number is not None else 0
        return (along, number, inst.sop_uid)

    return sorted(instances, key=key)


class DicomStore:
    """DICOM instances of cases, on top of a :class:`CaseStore` (same keys, blobs, audit)."""

    def __init__(
        self,
        case_store: CaseStore,
        *,
        prepare: Prepare,
        items: Items,
        max_upload_bytes: int = DEFAULT_MAX_DICOM_UPLOAD,
    ) -> None:
        self.cases = case_store
        self.prepare = prepare
        self.items = items
        self.max_upload_bytes = max_upload_bytes

    # -- import ------------------------------------------------------------

    @staticmethod
    def _secret(data_key: bytes) -> bytes:
        return hmac.new(data_key, b"cpms-dicom-deid", hashlib.sha256).digest()

    def _write_blob(
        self, case_id: str, data_key: bytes, data: bytes, media_type: str, ctx: AuditContext
    ) -> BlobRow:
        blob_id = str(uuid.uuid4())
        with self.cases.blobs.writer(blob_id) as fh:
            writer = SegmentedWriter(data_key, fh, blob_id=blob_id)
            writer.write(data)
            writer.close()
        return BlobRow(
            id=blob_id,
            case_id=case_id,
            name_enc=b"",  # filled in the transaction (needs the case cipher)
            media_type=media_type,
            size=len(data),
            stored_size=self.cases.blobs.size(blob_id),
            segment_size=DEFAULT_SEGMENT_SIZE,
            sha256_enc=hashlib.sha256(data).hexdigest().encode(),
            created_by=ctx.actor,
            created_at=datetime.now(UTC),
        )

    def _ingest(
        self,
        case_id: str,
        payloads: Iterable[Any],
        *,
        confirmed: frozenset[str],
        mask: Mapping[str, Any],
        ctx: AuditContext,
        source: str,
    ) -> dict:
        with session_scope(self.cases.sessions, write=False) as s:
            data_key = self.cases.keys.get(s, case_key_id(case_id))
            known = set(
                s.scalars(
                    select(DicomInstanceRow.sop_uid).where(DicomInstanceRow.case_id == case_id)
                )
            )
        secret = self._secret(data_key)
        report: list[dict] = []
        pending: list[tuple[DicomInstanceRow, list[BlobRow], dict]] = []
        written: list[str] = []
        try:
            for item in payloads:
                entry = {
                    "index": item.index,
                    "key": None,
                    "status": "error",
                    "study_uid": None,
                    "series_uid": None,
                    "sop_uid": None,
                    "removed": [],
                    "message": "",
                }
                report.append(entry)
                if item.data is None:
                    entry["message"] = item.error or "refused"
                    continue
                try:
                    prepared = self.prepare(item.data, secret, confirmed, mask)
                except CpmsError as exc:
                    entry["message"] = "; ".join(exc.reasons)
                    continue
                except MemoryError:
                    raise
                except Exception as exc:  # a reader's bug must fail this file, not the import
                    log.error(
                        "DICOM item %s of an import failed: %s", item.index, type(exc).__name__
                    )
                    entry["message"] = "could not be read (unexpected error in the DICOM reader)"
                    continue
                entry["key"] = prepared.key
                if not hasattr(prepared, "sop_uid"):  # held for burned-in text
                    entry.update(status="held", message=prepared.reason)
                    continue
                entry.update(
                    series_uid=prepared.series_uid,
                    sop_uid=prepared.sop_uid,
                    study_uid=prepared.study_uid,
                    removed=sorted(prepared.report.removed),
                    status="stored",
                )
                if prepared.sop_uid in known:
                    entry["message"] = "already stored in this case (same de-identified UID)"
                    continue
                known.add(prepared.sop_uid)
                blobs = [self._write_blob(case_id, data_key, prepared.dicom, DICOM_MEDIA_TYPE, ctx)]
                written.append(blobs[0].id)
                if prepared.pixels is not None:
                    blobs.append(
                        self._write_blob(
                            case_id,
                            data_key,
                            prepared.pixels,
                            _PIXELS_MEDIA_TYPE,
                            ctx,
                        )
                    )
                    written.append(blobs[1].id)
                row = DicomInstanceRow(
                    id=str(uuid.uuid4()),
                    case_id=case_id,
                    blob_id=blobs[0].id,
                    pixel_blob_id=blobs[1].id if len(blobs) > 1 else None,
                    study_uid=prepared.study_uid,
                    series_uid=prepared.series_uid,
                    sop_uid=prepared.sop_uid,
                    sop_class_uid=prepared.sop_class_uid,
                    transfer_syntax=prepared.transfer_syntax,
                    modality=prepared.modality[:16],
                    instance_number=prepared.instance_number,
                    frames=prepared.layout.frames,
                    frame_bytes=prepared.layout.frame_bytes,
                    pixel_offset=prepared.pixel_offset or 0,
                    view_enc=b"",
                    created_by=ctx.actor,
                    created_at=datetime.now(UTC),
                )
                doc = {
                    "view": prepared.view,
                    "summary": prepared.summary,
                    "report": prepared.report.as_json(),
                    "key": prepared.key,
                }
                pending.append((row, blobs, doc))
            counts = {
                "stored": sum(1 for e in report if e["status"] == "stored"),
                "held": sum(1 for e in report if e["status"] == "held"),
                "errors": sum(1 for e in report if e["status"] == "error"),
            }
            with session_scope(self.cases.sessions) as s:
                cipher = self.cases._cipher(s, case_id)
                for row, blobs, doc in pending:
                    for blob in blobs:
                        ad = {"table": "blobs", "row_id": blob.id}
                        name = (
                            f"{row.id}.dcm"
                            if blob.media_type == DICOM_MEDIA_TYPE
                            else f"{row.id}.frames"
                        )
                        blob.name_enc = cipher.encrypt(name, field="name", **ad)
                        blob.sha256_enc = cipher.encrypt(
                            blob.sha256_enc.decode(), field="sha256", **ad
                        )
                        s.add(blob)
                    s.flush()
                    row.view_enc = cipher.encrypt(
                        json.dumps(doc, separators=(",", ":")),
                        table="dicom_instances",
                        row_id=row.id,
                        field="view",
                    )
                    s.add(row)
                self.cases._allowed(
                    s,
                    ctx,
                    "dicom.import",
                    case_id,
                    detail=f"source={source} new={len(pending)} stored={counts['stored']} "
                    f"held={counts['held']} errors={counts['errors']}",
                )
        except sa_exc.IntegrityError:
            for blob_id in written:
                self.cases.blobs.delete(blob_id)
            # the unique index on (case, SOP UID): another import stored one of these first
            raise ConflictError(
                "concurrent import",
                reasons=("file_id: another import stored some of these instances; import again",),
            ) from None
        except BaseException:
            for blob_id in written:
                self.cases.blobs.delete(blob_id)
            raise
        studies = sorted({e["study_uid"] for e in report if e.get("study_uid")})
        return {"study_uids": studies, "instances": report, **counts}

    def import_file(
        self,
        case_id: str,
        file_id: str,
        *,
        confirmed: Iterable[str] = (),
        mask: Mapping[str, Any] | None = None,
        authorize: Authorize,
        ctx: AuditContext,
    ) -> dict:
        """Import an uploaded ``.dcm`` or ``.zip`` (see the module text); the report."""
        meta, reader = self.cases.open_file(case_id, file_id, authorize=authorize, ctx=ctx)
        with reader:
            if meta.media_type in (DICOM_MEDIA_TYPE, _PIXELS_MEDIA_TYPE):
                with session_scope(self.cases.sessions, write=False) as s:
                    taken = s.scalar(
                        select(DicomInstanceRow.id).where(
                            (DicomInstanceRow.blob_id == file_id)
                            | (DicomInstanceRow.pixel_blob_id == file_id)
                        )
                    )
                if taken is not None:
                    raise ConflictError(
                        "already imported", reasons=("file_id: is a stored DICOM instance",)
                    )
            if meta.size > self.max_upload_bytes:
                raise ValidationError("file", f"is larger than {self.max_upload_bytes} bytes")
            data = reader.read_all()
        result = self._ingest(
            case_id,
            self.items(data),
            confirmed=frozenset(confirmed),
            mask=mask or {},
            ctx=ctx,
            source=f"file:{file_id}",
        )
        del data
        result["file_id"] = file_id
        result["original_deleted"] = result["held"] == 0
        if result["original_deleted"]:
            with session_scope(self.cases.sessions) as s:
                s.execute(delete(BlobRow).where(BlobRow.id == file_id, BlobRow.case_id == case_id))
                self.cases._allowed(
                    s, ctx, "file.delete", case_id, detail=f"file={file_id} after=dicom.import"
                )
            self.cases.blobs.delete(file_id)
        return result

    def check_store(self, case_id: str, *, authorize: Authorize, ctx: AuditContext) -> None:
        """Refuse (and audit) a STOW-RS caller before its body is even read."""
        with session_scope(self.cases.sessions) as s:
            row = self.cases._row(s, case_id)
            self.cases._check(s, row, authorize, ctx, "dicom.store")

    def store_payloads(
        self,
        case_id: str,
        payloads: Sequence[bytes],
        *,
        authorize: Authorize,
        ctx: AuditContext,
    ) -> dict:
        """STOW-RS: each payload one instance, de-identified exactly like an import."""
        self.check_store(case_id, authorize=authorize, ctx=ctx)

        @dataclass(frozen=True)
        class _Item:
            index: int
            data: bytes | None
            error: str | None = None

        items = [_Item(i, p) for i, p in enumerate(payloads, start=1)]
        return self._ingest(
            case_id, items, confirmed=frozenset(), mask={}, ctx=ctx, source="stow-rs"
        )

    # -- reading -----------------------------------------------------------

    def instances(
        self,
        case_id: str,
        *,
        authorize: Authorize,
        ctx: AuditContext,
        action: str = "dicom.read",
        study_uid: str | None = None,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> tuple[bytes, list[DicomInstance]]:
        """The case's data key and its instances matching the filters (audited as ``action``)."""
        with session_scope(self.cases.sessions) as s:
            case = self.cases._row(s, case_id)
            self.cases._check(s, case, authorize, ctx, action)
            q = select(DicomInstanceRow).where(DicomInstanceRow.case_id == case_id)
            if study_uid is not None:
                q = q.where(DicomInstanceRow.study_uid == study_uid)
            if series_uid is not None:
                q = q.where(DicomInstanceRow.series_uid == series_uid)
            if sop_uid is not None:
                q = q.where(DicomInstanceRow.sop_uid == sop_uid)
            found = [_instance(s, self.cases, r) for r in s.scalars(q).all()]
            key = self.cases.keys.get(s, case_key_id(case_id))
            detail = " ".join(
                f"{k}={v}"
                for k, v in (("study", study_uid), ("series", series_uid), ("sop", sop_uid))
                if v
            )
            self.cases._allowed(s, ctx, action, case_id, detail=f"{detail} n={len(found)}".strip())
        return key, display_order(found)

    def list_studies(self, case_id: str, *, authorize: Authorize, ctx: AuditContext) -> list[dict]:
        """Studies with their series (counts, modality, shifted date, descriptions)."""
        _, found = self.instances(case_id, authorize=authorize, ctx=ctx, action="dicom.list")
        studies: dict[str, dict] = {}
        for inst in found:
            study = studies.setdefault(
                inst.study_uid,
                {
                    "study_uid": inst.study_uid,
                    "study_date": inst.summary.get("study_date") or None,
                    "description": inst.summary.get("study_description") or "",
                    "modalities": [],
                    "series": {},
                },
            )
            if inst.modality not in study["modalities"]:
                study["modalities"].append(inst.modality)
            series = study["series"].setdefault(
                inst.series_uid,
                {
                    "series_uid": inst.series_uid,
                    "modality": inst.modality,
                    "description": inst.summary.get("series_description") or "",
                    "number": inst.summary.get("series_number"),
                    "instances": 0,
                    "frames": 0,
                },
            )
            series["instances"] += 1
            series["frames"] += inst.frames
        out = []
        for study in studies.values():
            study["series"] = sorted(
                study["series"].values(), key=lambda x: (x["number"] is None, x["number"] or 0)
            )
            study["modalities"].sort()
            out.append(study)
        return sorted(out, key=lambda x: (x["study_date"] or "", x["study_uid"]))

    @contextmanager
    def open_blob(self, data_key: bytes, blob_id: str) -> Iterator[BinaryIO]:
        """A seekable reader of an instance's plaintext that decrypts only the segments it
        reads: a header is parsed without decrypting the pixels (no database access)."""
        if not _is_uuid(blob_id):
            raise NotFoundError("no such blob")
        with self.cases.blobs.open(blob_id) as fh:
            raw = SegmentedReader(data_key, fh, blob_id=blob_id)
            with _BlobReader(raw, buffer_size=DEFAULT_SEGMENT_SIZE) as reader:
                yield reader

    def read_blob(
        self, data_key: bytes, blob_id: str, offset: int = 0, length: int | None = None
    ) -> bytes:
        """Plaintext bytes of an instance's blob (no database access: the caller checked)."""
        if not _is_uuid(blob_id):
            raise NotFoundError("no such blob")
        with self.cases.blobs.open(blob_id) as fh:
            reader = SegmentedReader(data_key, fh, blob_id=blob_id)
            if length is None:
                length = reader.size - offset
            data = reader.read_at(offset, length)
        if len(data) != length:
            raise NotFoundError("no such frame")
        return data
