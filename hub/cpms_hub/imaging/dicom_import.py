"""Turning uploaded bytes into de-identified, storable DICOM instances.

An upload is one DICOM file or a zip of them (:func:`iter_items`). Each item becomes, by
:func:`prepare_instance`, exactly one of:

* a :class:`PreparedInstance`: the de-identified Part 10 file (native pixel data are
  written as Explicit VR Little Endian, compressed data stay in their transfer syntax),
  the decoded frames when they cannot be served from the file as they lie, the viewer's
  per-instance metadata and the de-identification report;
* a :class:`HeldInstance`: it declares or is likely to carry burned-in text
  (:func:`~cpms_hub.imaging.deid.burned_in_risk`) and the importer has neither confirmed
  it (its key in ``confirmed``) nor given regions to mask (``mask``: rectangles
  ``[x, y, width, height]`` in pixels, blacked out in every frame; the result is stored
  uncompressed with ``BurnedInAnnotation`` ``NO``);
* a :class:`~cpms_hub.domain.errors.ValidationError` naming what is wrong.

Zip archives are read member by member with bounds: at most ``max_members`` members, no
absolute or ``..`` paths, no nested archives, no member larger than the instance limit
or compressed more than ``_MAX_RATIO`` to 1 (a zip bomb), and a total size bound. A bad
member is reported as an error of its own; the others proceed. Member *names* are never
reported (they are often patient names): items are numbered in archive order.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian

from cpms_hub.domain.errors import ValidationError

from .deid import DeidKeys, DeidReport, burned_in_risk, deidentify
from .dicom import (
    DEFAULT_LIMITS,
    DicomLimits,
    FrameLayout,
    decode_frames,
    frame_layout,
    passthrough,
    read_instance,
    view_of,
)

__all__ = [
    "HeldInstance",
    "ImportItem",
    "PreparedInstance",
    "iter_items",
    "prepare_instance",
]

_ZIP_MAGIC = b"PK\x03\x04"
_MAX_RATIO = 200
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True, slots=True)
class ImportItem:
    """One file of an upload: its position (from 1), and its bytes or why it was refused."""

    index: int
    data: bytes | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HeldInstance:
    """An instance held back for burned-in text: ``key`` confirms or masks it next time."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class PreparedInstance:
    """A de-identified instance, ready to be stored."""

    key: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    instance_number: int | None
    dicom: bytes
    #: decoded frames, or None when they are served from ``dicom`` at ``pixel_offset``
    pixels: bytes | None
    pixel_offset: int | None
    layout: FrameLayout
    view: dict
    summary: dict
    report: DeidReport
    transfer_syntax: str
    masked: bool = False


def _is_zip(data: bytes) -> bool:
    return data[:4] == _ZIP_MAGIC


def iter_items(
    data: bytes, limits: DicomLimits = DEFAULT_LIMITS, *, max_members: int = 10000
) -> Iterator[ImportItem]:
    """The files of an upload: the upload itself, or each member of a zip."""
    if not _is_zip(data):
        yield ImportItem(1, data)
        return
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        yield ImportItem(1, None, "the zip archive is damaged")
        return
    files = [m for m in members if not m.is_dir()]
    if len(files) > max_members:
        yield ImportItem(1, None, f"the zip archive has more than {max_members} files")
        return
    total = 0
    for index, info in enumerate(files, start=1):
        name = info.filename.replace("\\", "/")
        if name.startswith("/") or ".." in name.split("/") or ":" in name.split("/")[0]:
            yield ImportItem(index, None, "unsafe path in the archive (absolute or '..')")
            continue
        if name.lower().endswith((".zip", ".tar", ".gz", ".tgz", ".7z", ".rar")):
            yield ImportItem(index, None, "nested archives are not imported")
            continue
        if info.file_size > limits.max_file_bytes:
            yield ImportItem(index, None, f"larger than {limits.max_file_bytes} bytes")
            continue
        if info.compress_size and info.file_size / info.compress_size > _MAX_RATIO:
            if info.file_size > 1024 * 1024:
                yield ImportItem(index, None, "compressed suspiciously well (a zip bomb?)")
                continue
        total += info.file_size
        if total > limits.max_decoded_bytes * 4:
            yield ImportItem(index, None, "the archive expands to too many bytes")
            return
        try:
            with archive.open(info) as fh:
                body = fh.read(limits.max_file_bytes + 1)
        except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError):
            yield ImportItem(index, None, "this member of the archive is damaged")
            continue
        except RuntimeError:  # encrypted members
            yield ImportItem(index, None, "encrypted archive members are not imported")
            continue
        if len(body) > limits.max_file_bytes:
            yield ImportItem(index, None, f"larger than {limits.max_file_bytes} bytes")
            continue
        if _is_zip(body):
            yield ImportItem(index, None, "nested archives are not imported")
            continue
        yield ImportItem(index, body)


def _apply_mask(pixels: bytes, layout: FrameLayout, rects: Sequence[Sequence[int]]) -> bytes:
    shape = (layout.frames, layout.rows, layout.columns, layout.samples_per_pixel)
    arr = np.frombuffer(pixels, dtype=layout.dtype).reshape(shape).copy()
    for rect in rects:
        if len(rect) != 4 or not all(isinstance(v, int) and v >= 0 for v in rect):
            raise ValidationError("mask_regions", "each region is [x, y, width, height]")
        x, y, w, h = rect
        arr[:, y : y + h, x : x + w, :] = 0
    return arr.tobytes()


def _native_dataset(ds: Dataset, pixels: bytes, layout: FrameLayout) -> None:
    """Replace ``ds``'s pixel data with decoded native frames (used after masking)."""
    ds.PixelData = pixels
    ds["PixelData"].VR = "OB" if layout.bits_allocated == 8 else "OW"
    ds.BitsAllocated = layout.bits_allocated
    ds.BitsStored = min(int(ds.get("BitsStored", layout.bits_allocated)), layout.bits_allocated)
    ds.HighBit = ds.BitsStored - 1
    ds.PhotometricInterpretation = layout.photometric
    if layout.samples_per_pixel == 3:
        ds.PlanarConfiguration = 0
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in ("LossyImageCompression",):
        ds.pop(keyword, None)


def _write(ds: Dataset) -> bytes:
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _pixel_offset(data: bytes, length: int) -> int:
    """Where the PixelData value starts in a written Explicit VR Little Endian file.

    Pixel data is the last element once de-identification removed the trailing padding
    and signatures, so its 12-byte header (tag, OB/OW, reserved, 32-bit length) sits right
    before the last ``length`` bytes; that is checked, and the file parsed when it is not.
    """
    at = len(data) - length
    head = data[at - 12 : at]
    expected = (b"\xe0\x7f\x10\x00OB\x00\x00", b"\xe0\x7f\x10\x00OW\x00\x00")
    if at >= 12 and head[:8] in expected and int.from_bytes(head[8:], "little") == length:
        return at
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(data), defer_size=1024)
    raw = ds.get_item(0x7FE00010, keep_deferred=True)  # the raw element: where its value is
    return int(raw.value_tell)


def _summary(ds: Dataset) -> dict:
    def text(keyword: str) -> str:
        return str(ds.get(keyword, "") or "")

    number = ds.get("SeriesNumber")
    try:
        series_number = int(number) if number not in (None, "") else None
    except (TypeError, ValueError):
        series_number = None
    return {
        "study_date": text("StudyDate"),
        "study_description": text("StudyDescription"),
        "series_description": text("SeriesDescription"),
        "series_number": series_number,
    }


def prepare_instance(
    data: bytes,
    keys: DeidKeys,
    *,
    confirmed: frozenset[str] | set[str] = frozenset(),
    mask: Mapping[str, Sequence[Sequence[int]]] | None = None,
    limits: DicomLimits = DEFAULT_LIMITS,
) -> PreparedInstance | HeldInstance:
    """Read, check, decode where needed and de-identify one instance (see module text)."""
    ds = read_instance(data, limits)
    if str(ds.SOPClassUID) == _DICOMDIR_CLASS:
        raise ValidationError("file", "is a DICOMDIR index, not an image")
    key = keys.instance_key(str(ds.SOPInstanceUID))
    risk = burned_in_risk(ds)
    rects = (mask or {}).get(key)
    if risk is not None and key not in confirmed and not rects:
        return HeldInstance(key, f"held back: {risk}; mask the regions or confirm it")
    extra: list[str] = []
    pixels: bytes | None = None
    if rects:
        pixels, layout = decode_frames(ds)
        pixels = _apply_mask(pixels, layout, rects)
        _native_dataset(ds, pixels, layout)
        ds.BurnedInAnnotation = "NO"
        extra.append("Burned-in regions masked on import")
        pixels = None  # the masked file is native: served from the file itself
    elif risk is not None:
        extra.append("Burned-in text risk confirmed by the importer")
    if ds.get("PixelData") is None:  # present but empty reads back as None
        raise ValidationError("PixelData", "is missing or empty")
    native = passthrough(ds)
    if native:
        layout = frame_layout(ds)
        expected = layout.frame_bytes * layout.frames
        if len(ds.PixelData) < expected:
            raise ValidationError(
                "PixelData", "is shorter than Rows x Columns x frames (truncated)"
            )
        if len(ds.PixelData) > expected + 1:
            ds.PixelData = bytes(ds.PixelData[:expected])
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        pixels, layout = decode_frames(ds)
    report = deidentify(ds, keys, extra_methods=extra)
    try:
        written = _write(ds)
    except Exception as exc:
        raise ValidationError("file", f"could not be written back ({type(exc).__name__})") from None
    offset = _pixel_offset(written, len(ds.PixelData)) if native else None
    return PreparedInstance(
        key=key,
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        modality=str(ds.get("Modality", "") or "OT"),
        instance_number=view_of(ds, layout)["number"],
        dicom=written,
        pixels=pixels,
        pixel_offset=offset,
        layout=layout,
        view=view_of(ds, layout),
        summary=_summary(ds),
        report=report,
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        masked=bool(rects),
    )
