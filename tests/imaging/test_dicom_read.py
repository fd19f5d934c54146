"""Reading, decoding and preparing DICOM instances: transfer syntaxes, limits, bad input.

Real files: pydicom's bundled test files (uncompressed little and big endian, deflated,
RLE, JPEG baseline / extended / lossless, JPEG-LS, JPEG 2000, multi-frame, overlays,
truncated and bad-VR files) and synthetic CT / ultrasound from :mod:`tests.data_gen`.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless

from cpms_hub.domain.errors import ValidationError
from cpms_hub.imaging.deid import DeidKeys
from cpms_hub.imaging.dicom import DicomLimits, decode_frames, read_instance, render_frame
from cpms_hub.imaging.dicom_import import (
    HeldInstance,
    PreparedInstance,
    iter_items,
    prepare_instance,
)
from tests.data_gen import ct_series, us_cine

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
KEYS = DeidKeys(b"\x03" * 32)


def _data(name: str) -> bytes:
    return (TEST_FILES / name).read_bytes()


def _pixels(name: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(TEST_FILES / name).pixel_array


def _confirmed(data: bytes) -> set[str]:
    uid = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID
    return {KEYS.instance_key(str(uid))}


@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("CT_small.dcm", "1.2.840.10008.1.2.1"),
        ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
        ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
        ("image_dfl.dcm", "1.2.840.10008.1.2.1.99"),
        ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),
        ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50"),
        ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51"),
        ("SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70"),
        ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
        ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),
        ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91"),
        ("examples_ybr_color.dcm", "1.2.840.10008.1.2.4.50"),
        ("rtdose.dcm", "1.2.840.10008.1.2"),
    ],
)
def test_every_transfer_syntax_serves_the_decoded_pixels(name: str, syntax: str) -> None:
    data = _data(name)
    assert str(pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID) == syntax
    prepared = prepare_instance(data, KEYS, confirmed=_confirmed(data))
    assert isinstance(prepared, PreparedInstance)
    layout = prepared.layout
    if prepared.pixels is None:  # native: served from the stored file at an offset
        raw = prepared.dicom[prepared.pixel_offset :][: layout.frame_bytes * layout.frames]
    else:
        raw = prepared.pixels
    want = _pixels(name)
    got = np.frombuffer(raw, layout.dtype).reshape(want.shape)
    if layout.photometric == "RGB" and str(want.dtype) == "uint8":
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    else:
        assert np.array_equal(got, want.astype(layout.dtype))
    # the stored file reads back, de-identified
    back = pydicom.dcmread(io.BytesIO(prepared.dicom))
    assert back.PatientIdentityRemoved == "YES" and back.SOPInstanceUID == prepared.sop_uid
    # and a thumbnail can be drawn from frame 1
    png = render_frame(raw[: layout.frame_bytes], prepared.view, "png")
    assert png.startswith(b"\x89PNG")


def test_multiframe_ultrasound(tmp_path) -> None:
    path = us_cine(tmp_path / "us.dcm", frames=5, rows=24, columns=32)
    data = path.read_bytes()
    prepared = prepare_instance(data, KEYS)
    assert isinstance(prepared, PreparedInstance)  # BurnedInAnnotation NO
    assert prepared.layout.frames == 5 and prepared.view["frame_time_ms"] == 40.0
    raw = prepared.dicom[prepared.pixel_offset :][: prepared.layout.frame_bytes * 5]
    assert np.array_equal(
        np.frombuffer(raw, np.uint8).reshape(5, 24, 32), pydicom.dcmread(path).pixel_array
    )


def test_burned_in_is_held_then_masked(tmp_path) -> None:
    path = us_cine(tmp_path / "us.dcm", frames=2, rows=24, columns=32)
    ds = pydicom.dcmread(path)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(path)
    data = path.read_bytes()
    held = prepare_instance(data, KEYS)
    assert isinstance(held, HeldInstance) and "burned-in" in held.reason
    masked = prepare_instance(data, KEYS, mask={held.key: [[0, 0, 10, 5]]})
    assert isinstance(masked, PreparedInstance) and masked.masked
    out = pydicom.dcmread(io.BytesIO(masked.dicom))
    assert out.BurnedInAnnotation == "NO"
    assert not out.pixel_array[:, :5, :10].any() and out.pixel_array[:, 5:, 10:].any()
    confirmed = prepare_instance(data, KEYS, confirmed={held.key})
    assert isinstance(confirmed, PreparedInstance) and not confirmed.masked
    with pytest.raises(ValidationError, match="mask_regions"):
        prepare_instance(data, KEYS, mask={held.key: [[0, 0, -1]]})


@pytest.mark.parametrize(
    ("name", "field", "reason"),
    [
        ("README.txt", "file", "not a DICOM file"),
        ("no_meta.dcm", "file", "not a DICOM file"),
        ("MR_truncated.dcm", "PixelData", "truncated"),
        ("badVR.dcm", "NumberOfFrames", "not a number"),
        ("rtplan.dcm", "PixelData", "only images"),
        ("JPEG-lossy.dcm", "TransferSyntaxUID", "JPEG Extended"),
        ("meta_missing_tsyntax.dcm", "file", "transfer syntax"),
    ],
)
def test_bad_files_get_a_clear_error(name: str, field: str, reason: str) -> None:
    data = _data(name)
    try:
        confirmed = _confirmed(data)  # secondary captures are held before decoding
    except Exception:
        confirmed = set()
    with pytest.raises(ValidationError) as err:
        prepare_instance(data, KEYS, confirmed=confirmed)
    assert err.value.field == field and reason in str(err.value)


def test_truncated_anywhere_is_refused_cleanly() -> None:
    data = _data("CT_small.dcm")
    for cut in (10, 140, 400, 1000, 3000, 20000, 38000):
        with pytest.raises(ValidationError):
            prepare_instance(data[:cut], KEYS)


def test_limits() -> None:
    data = _data("CT_small.dcm")
    with pytest.raises(ValidationError, match="larger than"):
        read_instance(data, DicomLimits(max_file_bytes=1000))
    with pytest.raises(ValidationError, match="larger than 64 pixels"):
        read_instance(data, DicomLimits(max_side=64))
    with pytest.raises(ValidationError, match="decodes to more"):
        read_instance(data, DicomLimits(max_decoded_bytes=1000))
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.NumberOfFrames = 100000
    out = io.BytesIO()
    ds.save_as(out)
    with pytest.raises(ValidationError):
        read_instance(out.getvalue())


def test_decompression_bomb_is_refused_before_decoding() -> None:
    """A JPEG 2000 frame that declares far more pixels than Rows x Columns."""
    ds = pydicom.dcmread(TEST_FILES / "MR_small_jp2klossless.dcm")
    frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    at = frame.find(b"\xff\x4f\xff\x51")
    big = bytearray(frame)
    big[at + 8 : at + 16] = (60000).to_bytes(4, "big") + (60000).to_bytes(4, "big")
    ds.PixelData = encapsulate([bytes(big)])
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    with pytest.raises(ValidationError, match="codestream is larger"):
        decode_frames(ds)


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in members.items():
            z.writestr(name, body)
    return out.getvalue()


def test_archives_are_read_member_by_member(tmp_path) -> None:
    ct = ct_series(tmp_path, slices=2, size=16)
    bomb = b"\x00" * (8 * 1024 * 1024)
    archive = _zip(
        {
            "a/1.dcm": ct[0].read_bytes(),
            "../2.dcm": ct[1].read_bytes(),
            "/abs.dcm": ct[1].read_bytes(),
            "inner.zip": _zip({"x.dcm": ct[0].read_bytes()}),
            "hidden": _zip({"x.dcm": ct[0].read_bytes()}),
            "bomb.dcm": bomb,
            "b/": b"",
        }
    )
    items = list(iter_items(archive))
    errors = {i.index: i.error for i in items if i.error}
    assert [i.index for i in items if i.data is not None] == [1]
    assert "unsafe path" in errors[2] and "unsafe path" in errors[3]
    assert "nested" in errors[4] and "nested" in errors[5]
    assert "zip bomb" in errors[6]
    assert list(iter_items(b"PK\x03\x04garbage"))[0].error == "the zip archive is damaged"
    # a non-zip upload is one item
    assert [i.index for i in iter_items(ct[0].read_bytes())] == [1]


@pytest.mark.parametrize(
    "name",
    ["JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm", "SC_rgb_jls_lossy_line.dcm"],
)
def test_jpeg_ls_near_lossless_decodes(name: str) -> None:
    """These files lack the UIDs an import needs, but their frames decode the same."""
    ds = pydicom.dcmread(TEST_FILES / name)
    raw, layout = decode_frames(ds)
    want = _pixels(name)
    assert np.array_equal(np.frombuffer(raw, layout.dtype).reshape(want.shape), want)
