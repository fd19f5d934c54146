"""Reading DICOM instances with limits, decoding their frames, and rendering thumbnails.

Reading (:func:`read_instance`) refuses, with a :class:`ValidationError` naming what is
wrong and never a value from the file: anything larger than ``max_file_bytes``, a file
without the DICOM preamble and file meta, a file pydicom cannot parse in full (truncated,
bad VRs: every element is decoded once, recursively, so a bad one fails here and not
later), an instance without pixel data, dimensions beyond ``max_side``, more than
``max_frames`` frames, or a decoded size beyond ``max_decoded_bytes``. Encapsulated
frames are checked *before* decoding: each frame's codestream header (JPEG SOF, JPEG-LS
SOF55, JPEG 2000 SIZ) must not declare more pixels than the dataset does, so a small file
cannot make a decoder allocate gigabytes (a decompression bomb).

Decoding (:func:`decode_frames`) goes through pydicom 3's pixel backends: numpy for
native and RLE data, pylibjpeg-libjpeg for JPEG baseline/extended/lossless and JPEG-LS,
pylibjpeg-openjpeg for JPEG 2000, pylibjpeg-rle for fast RLE. A transfer syntax none of
them decodes is refused with its name and UID. Output is what the viewer contract asks
for: little-endian samples, colour interleaved (``RGB`` after YBR conversion), one frame
after another.

:func:`passthrough` tells whether the stored file's pixel data can be served as it lies
(native little-endian, 8/16/32-bit, interleaved, monochrome/RGB/palette): then frames
are read straight from the encrypted file at an offset, with no decode at all.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragmented_frames
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from cpms_hub.domain.errors import ValidationError

__all__ = [
    "DEFAULT_LIMITS",
    "DicomLimits",
    "FrameLayout",
    "decode_frames",
    "frame_layout",
    "passthrough",
    "read_instance",
    "render_frame",
    "view_of",
]

# pydicom logs and warns with *values* from the file (an invalid PatientName, a date):
# those must never reach the service's log, so its logger and warnings are silenced here
logging.getLogger("pydicom").disabled = True
warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")

_NATIVE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
_PASS_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR")


@dataclass(frozen=True, slots=True)
class DicomLimits:
    """Bounds on one instance; anything beyond is refused before it costs memory."""

    max_file_bytes: int = 1024**3
    max_side: int = 16384
    max_frames: int = 5000
    max_decoded_bytes: int = 1024**3


DEFAULT_LIMITS = DicomLimits()


@dataclass(frozen=True, slots=True)
class FrameLayout:
    """Geometry of the decoded frames as served (little-endian, interleaved)."""

    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    bits_allocated: int
    pixel_representation: int
    photometric: str

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.columns * self.samples_per_pixel * (self.bits_allocated // 8)

    @property
    def dtype(self) -> np.dtype:
        kind = "i" if self.pixel_representation else "u"
        return np.dtype(f"<{kind}{self.bits_allocated // 8}")


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword, default)
    if value is None or value == "":
        if default is None:
            raise ValidationError(keyword, "is missing")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValidationError(keyword, "is not a number") from None


def _touch(ds: Dataset, depth: int = 0) -> None:
    """Decode every element once, so that bad values fail now (bounded nesting)."""
    if depth > 16:
        raise ValidationError("file", "sequences are nested too deeply")
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _touch(item, depth + 1)


def read_instance(data: bytes, limits: DicomLimits = DEFAULT_LIMITS) -> Dataset:
    """Parse one DICOM Part 10 file from memory, with the checks above."""
    if len(data) > limits.max_file_bytes:
        raise ValidationError("file", f"is larger than {limits.max_file_bytes} bytes")
    if len(data) < 132 or data[128:132] != b"DICM":
        raise ValidationError("file", "is not a DICOM file (no DICM preamble)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(io.BytesIO(data), force=False)
            _touch(ds)
    except ValidationError:
        raise
    except InvalidDicomError:
        raise ValidationError("file", "is not a valid DICOM file") from None
    except Exception as exc:  # pydicom raises many kinds for broken input
        # the exception text may quote values from the file: only its kind is named
        raise ValidationError(
            "file", f"could not be parsed as DICOM (truncated or bad value: {type(exc).__name__})"
        ) from None
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise ValidationError("file", "has no transfer syntax in its file meta")
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not str(ds.get(keyword, "") or "").strip():
            raise ValidationError(keyword, "is missing")
    if "PixelData" not in ds:
        raise ValidationError("PixelData", "is missing: only images are imported")
    layout = frame_layout(ds, decoded=False)
    decoded = layout.rows * layout.columns * layout.samples_per_pixel * layout.frames
    decoded *= max(layout.bits_allocated, 8) // 8
    if decoded > limits.max_decoded_bytes:
        raise ValidationError("file", f"decodes to more than {limits.max_decoded_bytes} bytes")
    if layout.rows > limits.max_side or layout.columns > limits.max_side:
        raise ValidationError("Rows", f"images larger than {limits.max_side} pixels are refused")
    if layout.frames > limits.max_frames:
        raise ValidationError("NumberOfFrames", f"more than {limits.max_frames} frames")
    return ds


def frame_layout(ds: Dataset, *, decoded: bool = True) -> FrameLayout:
    """Frame geometry; with ``decoded`` as :func:`decode_frames` returns it."""
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    frames = _int(ds, "NumberOfFrames", 1) or 1
    spp = _int(ds, "SamplesPerPixel", 1)
    bits = _int(ds, "BitsAllocated")
    rep = _int(ds, "PixelRepresentation", 0)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if rows < 1 or columns < 1 or frames < 1:
        raise ValidationError("Rows", "image dimensions must be positive")
    if spp not in (1, 3) or bits not in (1, 8, 16, 32) or rep not in (0, 1):
        raise ValidationError("BitsAllocated", "unsupported sample layout")
    if decoded:
        if bits == 1:
            bits = 8
        if spp == 3 and photometric.startswith("YBR"):
            photometric = "RGB"
    return FrameLayout(rows, columns, frames, spp, bits, rep, photometric)


def transfer_syntax(ds: Dataset) -> UID:
    return UID(str(ds.file_meta.TransferSyntaxUID))


def passthrough(ds: Dataset) -> bool:
    """Whether frames can be served straight from the stored (native) pixel data."""
    layout = frame_layout(ds, decoded=False)
    return (
        transfer_syntax(ds) in _NATIVE
        and layout.bits_allocated in (8, 16, 32)
        and layout.photometric in _PASS_PHOTOMETRIC
        and (layout.samples_per_pixel == 1 or _int(ds, "PlanarConfiguration", 0) == 0)
    )


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(rows, columns) from the first SOF/SOF55 of a JPEG or JPEG-LS stream."""
    i = 2
    n = len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:
            rows, cols = struct.unpack(">HH", data[i + 5 : i + 9])
            return rows, cols
        i += 2 + length
    return None


def _j2k_size(data: bytes) -> tuple[int, int] | None:
    at = data.find(b"\xff\x4f\xff\x51", 0, 4096)
    if at < 0 or at + 22 > len(data):
        return None
    xsiz, ysiz, xo, yo = struct.unpack(">IIII", data[at + 8 : at + 24])
    return ysiz - yo, xsiz - xo


def _check_codestreams(ds: Dataset, layout: FrameLayout) -> None:
    """Refuse frames whose codestream declares more pixels than the dataset."""
    ts = transfer_syntax(ds)
    jpeg = ts.startswith("1.2.840.10008.1.2.4.") and not ts.startswith("1.2.840.10008.1.2.4.9")
    j2k = ts.startswith("1.2.840.10008.1.2.4.9") or ts.startswith("3.2.840.10008.1.2.4.9")
    if not (jpeg or j2k):
        return
    count = 0
    for fragments in generate_fragmented_frames(ds.PixelData, number_of_frames=layout.frames):
        count += 1
        if count > layout.frames:
            raise ValidationError("PixelData", "holds more frames than NumberOfFrames")
        head = bytes(fragments[0][:4096]) if fragments else b""
        size = _j2k_size(head) if j2k else _jpeg_size(head)
        if size is None:
            continue  # the decoder reports a broken stream itself
        if size[0] > layout.rows or size[1] > layout.columns:
            raise ValidationError("PixelData", "a frame's codestream is larger than Rows x Columns")


def decode_frames(ds: Dataset) -> tuple[bytes, FrameLayout]:
    """All frames decoded to little-endian, interleaved samples, frame after frame."""
    if ds.get("PixelData") is None:  # present but empty reads back as None
        raise ValidationError("PixelData", "is missing or empty")
    layout = frame_layout(ds)
    ts = transfer_syntax(ds)
    if ts.is_encapsulated:
        try:
            _check_codestreams(ds, layout)
        except ValidationError:
            raise
        except Exception:
            raise ValidationError("PixelData", "the encapsulated frames are malformed") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except NotImplementedError:
        raise ValidationError(
            "TransferSyntaxUID", f"{ts.name} ({ts}) cannot be decoded here"
        ) from None
    except (RuntimeError, ValueError) as exc:
        if "plugin" in str(exc).lower() or "decod" in str(exc).lower():
            raise ValidationError(
                "TransferSyntaxUID", f"{ts.name} ({ts}): the pixel data could not be decoded"
            ) from None
        raise ValidationError("PixelData", f"is damaged ({type(exc).__name__})") from None
    except Exception as exc:
        raise ValidationError("PixelData", f"is damaged ({type(exc).__name__})") from None
    want = layout.dtype
    if arr.dtype.kind == "b" or arr.dtype.itemsize != want.itemsize:
        arr = arr.astype(want)
    arr = np.ascontiguousarray(arr, dtype=want.newbyteorder("<"))
    expected = layout.frame_bytes * layout.frames
    if arr.nbytes != expected:
        raise ValidationError("PixelData", "decoded size does not match Rows x Columns x frames")
    return arr.tobytes(), layout


def _float(ds: Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        out = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return out if out is not None and math.isfinite(out) else None


def _floats(ds: Dataset, keyword: str, n: int) -> list[float] | None:
    value = ds.get(keyword)
    try:
        out = [float(v) for v in value] if value is not None else None
    except (TypeError, ValueError):
        return None
    if out is None or len(out) != n or not all(math.isfinite(v) for v in out):
        return None
    return out


def view_of(ds: Dataset, layout: FrameLayout) -> dict:
    """The per-instance part of the viewer's ``meta`` document (nothing identifying)."""
    frame_time = _float(ds, "FrameTime")
    if frame_time is None and ds.get("RecommendedDisplayFrameRate"):
        rate = _float(ds, "RecommendedDisplayFrameRate")
        frame_time = 1000.0 / rate if rate else None
    return {
        "sop_uid": str(ds.SOPInstanceUID),
        "number": _safe_int(ds, "InstanceNumber"),
        "rows": layout.rows,
        "columns": layout.columns,
        "frames": layout.frames,
        "bits_allocated": layout.bits_allocated,
        "bits_stored": _safe_int(ds, "BitsStored"),
        "pixel_representation": layout.pixel_representation,
        "samples_per_pixel": layout.samples_per_pixel,
        "photometric": layout.photometric,
        "rescale_slope": _float(ds, "RescaleSlope") or 1.0,
        "rescale_intercept": _float(ds, "RescaleIntercept") or 0.0,
        "window_center": _float(ds, "WindowCenter"),
        "window_width": _float(ds, "WindowWidth"),
        "pixel_spacing": _floats(ds, "PixelSpacing", 2),
        "position": _floats(ds, "ImagePositionPatient", 3),
        "orientation": _floats(ds, "ImageOrientationPatient", 6),
        "frame_time_ms": frame_time,
    }


def _safe_int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def render_frame(raw: bytes, view: dict, fmt: str = "png", *, max_side: int = 512) -> bytes:
    """An 8-bit windowed picture of one decoded frame (PNG or JPEG), at most ``max_side``."""
    from PIL import Image  # imported here: only thumbnails need Pillow

    rows, cols, spp = view["rows"], view["columns"], view["samples_per_pixel"]
    kind = "i" if view["pixel_representation"] else "u"
    dtype = np.dtype(f"<{kind}{view['bits_allocated'] // 8}")
    arr = np.frombuffer(raw, dtype=dtype)
    if spp == 3:
        img = arr.reshape(rows, cols, 3).astype(np.uint8, copy=False)
        mode = "RGB"
    else:
        values = arr.reshape(rows, cols).astype(np.float32)
        values = values * float(view["rescale_slope"]) + float(view["rescale_intercept"])
        center, width = view.get("window_center"), view.get("window_width")
        if center is None or not width or width <= 0:
            low, high = float(values.min()), float(values.max())
        else:
            low, high = center - width / 2, center + width / 2
        scale = 255.0 / max(high - low, 1e-6)
        img = np.clip((values - low) * scale, 0, 255).astype(np.uint8)
        if view["photometric"] == "MONOCHROME1":
            img = 255 - img
        mode = "L"
    picture = Image.fromarray(img, mode)
    picture.thumbnail((max_side, max_side))
    out = io.BytesIO()
    if fmt == "jpeg":
        picture.save(out, format="JPEG", quality=85)
    else:
        picture.save(out, format="PNG", compress_level=1)
    return out.getvalue()
