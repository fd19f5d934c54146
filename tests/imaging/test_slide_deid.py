"""De-identification of Aperio SVS slides on import (real CMU-1-Small-Region slide).

Checks the issue's acceptance points: label and macro gone, identifying fields gone (from
OpenSlide's properties and from the bytes of the file), level-0 pixels unchanged, the result
still opens in OpenSlide, the report names what was removed; other formats and broken files
are refused with clear errors.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

from cpms_hub.domain.errors import ValidationError
from cpms_hub.imaging import (
    SlideImportReport,
    UnsupportedFormatError,
    deidentify_svs,
    detect_slide_format,
)

REPO = Path(__file__).resolve().parents[2]
_CANDIDATES = [
    Path(os.environ.get("CPMS_SLIDE_SAMPLE", "/nonexistent")),
    REPO / "data" / "CMU-1-Small-Region.svs",
    REPO.parent / "shared" / "data" / "CMU-1-Small-Region.svs",
]
SAMPLE = next((p for p in _CANDIDATES if p.is_file()), None)
pytestmark = pytest.mark.skipif(SAMPLE is None, reason="CMU-1-Small-Region.svs not present")

#: identifying values present in the original slide (checked absent from the output bytes)
IDENTIFYING = [
    b"CMU-1",
    b"12/29/09",
    b"09:59:15",
    b"b414003d-95c6-48b0-9369-8010ed517ba7",
    b"CPAPERIOCS",
    b"1004486",
]


@pytest.fixture(scope="module")
def deidentified(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SlideImportReport]:
    out = tmp_path_factory.mktemp("deid") / "slide.svs"
    with open(out, "w+b") as dst:
        report = deidentify_svs(SAMPLE, dst)
    return out, report


def test_original_is_identifying() -> None:
    data = SAMPLE.read_bytes()
    assert all(value in data for value in IDENTIFYING)
    slide = openslide.OpenSlide(SAMPLE)
    assert {"label", "macro"} <= set(slide.associated_images)


def test_label_and_macro_removed_thumbnail_kept(deidentified) -> None:
    path, report = deidentified
    slide = openslide.OpenSlide(path)
    assert set(slide.associated_images) == {"thumbnail"}
    assert report.removed_images == ("label", "macro")
    assert report.kept_images == ("thumbnail",)
    # the label and macro pixel data are gone from the file, not just unlinked
    original = SAMPLE.read_bytes()
    out = path.read_bytes()
    assert len(out) == len(original)
    with tifffile.TiffFile(SAMPLE) as tif:
        removed = [tif.pages[2], tif.pages[3]]  # label (LZW strips), macro (JPEG strips)
        for page in removed:
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                assert original[offset : offset + count] != b"\0" * count
                assert out[offset : offset + count] == b"\0" * count


def test_identifying_fields_removed(deidentified) -> None:
    path, report = deidentified
    props = openslide.OpenSlide(path).properties
    for field in ("Filename", "Date", "Time", "User", "ScanScope ID", "ImageID"):
        assert f"aperio.{field}" not in props
        assert f"aperio.{field}" in report.removed_fields
    data = path.read_bytes()
    for value in IDENTIFYING:
        assert value not in data, value
    # the report names fields only, never their values
    text = repr(report).encode()
    assert not any(value in text for value in IDENTIFYING)


def test_technical_fields_kept(deidentified) -> None:
    path, report = deidentified
    props = openslide.OpenSlide(path).properties
    assert props["openslide.vendor"] == "aperio"
    assert props["aperio.MPP"] == "0.4990"
    assert props["aperio.AppMag"] == "20"
    assert props["openslide.mpp-x"] == "0.499"
    assert props["openslide.objective-power"] == "20"
    assert report.microns_per_pixel == pytest.approx(0.499)
    assert (report.width, report.height, report.levels) == (2220, 2967, 1)


def test_level0_pixels_unchanged(deidentified) -> None:
    path, _report = deidentified
    before = openslide.OpenSlide(SAMPLE)
    after = openslide.OpenSlide(path)
    assert after.level_dimensions == before.level_dimensions
    a = np.asarray(before.read_region((0, 0), 0, before.dimensions))
    b = np.asarray(after.read_region((0, 0), 0, after.dimensions))
    assert np.array_equal(a, b)
    thumb_a = np.asarray(before.associated_images["thumbnail"])
    thumb_b = np.asarray(after.associated_images["thumbnail"])
    assert np.array_equal(thumb_a, thumb_b)


def test_deidentifying_twice_removes_nothing_more(deidentified, tmp_path: Path) -> None:
    path, _report = deidentified
    again = tmp_path / "again.svs"
    with open(again, "w+b") as dst:
        report = deidentify_svs(path, dst)
    assert report.removed_images == () and report.removed_fields == ()
    assert again.read_bytes() == path.read_bytes()


def test_non_aperio_tiff_refused(tmp_path: Path) -> None:
    src = tmp_path / "plain.tif"
    Image.new("RGB", (64, 64), "red").save(src, format="TIFF")
    with pytest.raises(UnsupportedFormatError) as info, io.BytesIO() as dst:
        deidentify_svs(src, dst)
    assert "'tiff'" in str(info.value) and "Aperio" in str(info.value)


@pytest.mark.parametrize(
    ("name", "payload", "detected"),
    [
        ("photo.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 200, "jpeg"),
        ("scan.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 200, "png"),
        ("study.dcm", b"\0" * 128 + b"DICM" + b"\0" * 100, "dicom"),
        ("slide.mrxs.zip", b"PK\x03\x04" + b"\0" * 200, "zip"),
    ],
)
def test_other_formats_refused_naming_the_format(
    tmp_path: Path, name: str, payload: bytes, detected: str
) -> None:
    src = tmp_path / name
    src.write_bytes(payload)
    assert detect_slide_format(src) == detected
    with pytest.raises(UnsupportedFormatError) as info:
        deidentify_svs(src, io.BytesIO())
    assert info.value.detected == detected
    assert detected in str(info.value)


def test_truncated_slide_refused(tmp_path: Path) -> None:
    src = tmp_path / "truncated.svs"
    src.write_bytes(SAMPLE.read_bytes()[:1_000_000])
    with pytest.raises(ValidationError) as info:
        deidentify_svs(src, io.BytesIO())
    assert info.value.field == "slide"


def test_corrupt_header_refused(tmp_path: Path) -> None:
    data = bytearray(SAMPLE.read_bytes())
    data[4:8] = struct.pack("<I", len(data) + 100)  # first IFD beyond the end
    src = tmp_path / "corrupt.svs"
    src.write_bytes(bytes(data))
    with pytest.raises(ValidationError):
        deidentify_svs(src, io.BytesIO())


def test_absurd_dimensions_refused(tmp_path: Path) -> None:
    data = bytearray(SAMPLE.read_bytes())
    first = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[first : first + 2])[0]
    for i in range(count):
        at = first + 2 + 12 * i
        tag, typ = struct.unpack("<HH", data[at : at + 4])
        if tag == 256:  # ImageWidth := 4,000,000 (as LONG)
            data[at + 2 : at + 12] = struct.pack("<HII", 4, 1, 4_000_000)
    src = tmp_path / "absurd.svs"
    src.write_bytes(bytes(data))
    with pytest.raises(ValidationError) as info:
        deidentify_svs(src, io.BytesIO())
    assert "absurd" in str(info.value)


def _synthetic_bigtiff(path: Path) -> None:
    """BigTIFF Aperio slide: level 0, thumbnail, level 1, label, macro, identifying tags."""
    rng = np.random.default_rng(5)
    small = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(small).resize((1000, 800), Image.Resampling.BICUBIC))
    fields = "|AppMag = 40|MPP = 0.25|Filename = JaneDoe-0042|Date = 01/02/24|User = jdoe"
    fields += "|Barcode = PAT-778899|ScanScope ID = SS1234"
    header = "Aperio Image Library v12.0.15\r\n1000x800 [0,0 1000x800] (256x256) JPEG/RGB Q=70"
    identifying = [
        (315, "s", 0, "Dr Artist", True),
        (316, "s", 0, "pathlab-host-7", True),
        (269, "s", 0, "case-JaneDoe", True),
    ]
    jpeg = {"compression": "jpeg", "compressionargs": {"outcolorspace": "RGB"}}
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(
            image,
            tile=(256, 256),
            photometric="rgb",
            description=header + fields,
            metadata=None,
            datetime="2024:01:02 10:11:12",
            extratags=identifying,
            software="ScanSoft 1.0",
            **jpeg,
        )
        thumb = np.asarray(Image.fromarray(image).resize((250, 200)))
        tif.write(
            thumb,
            photometric="rgb",
            rowsperstrip=16,
            description="Aperio Image Library v12.0.15\r\n1000x800 -> 250x200 - " + fields,
            metadata=None,
            **jpeg,
        )
        tif.write(
            image[::4, ::4].copy(),
            tile=(256, 256),
            photometric="rgb",
            description="Aperio Image Library v12.0.15\r\n1000x800 -> 250x200 - " + fields,
            metadata=None,
            **jpeg,
        )
        label = np.full((60, 80, 3), 200, np.uint8)
        tif.write(
            label,
            photometric="rgb",
            compression="lzw",
            subfiletype=1,
            description="Aperio Image Library v12.0.15\r\nlabel 80x60",
            metadata=None,
        )
        macro = np.full((50, 150, 3), 90, np.uint8)
        tif.write(
            macro,
            photometric="rgb",
            subfiletype=9,
            description="Aperio Image Library v12.0.15\r\nmacro 150x50",
            metadata=None,
            **jpeg,
        )


def test_bigtiff_slide_with_identifying_tags(tmp_path: Path) -> None:
    src = tmp_path / "big.svs"
    _synthetic_bigtiff(src)
    before = openslide.OpenSlide(src)
    assert before.properties["openslide.vendor"] == "aperio"
    assert {"label", "macro", "thumbnail"} == set(before.associated_images)
    assert before.level_count == 2
    out = tmp_path / "deid.svs"
    with open(out, "w+b") as dst:
        report = deidentify_svs(src, dst)
    after = openslide.OpenSlide(out)
    assert set(after.associated_images) == {"thumbnail"}
    assert report.removed_images == ("label", "macro")
    for name in (
        "aperio.Filename",
        "aperio.Date",
        "aperio.User",
        "aperio.Barcode",
        "aperio.ScanScope ID",
        "tiff.Artist",
        "tiff.HostComputer",
        "tiff.DocumentName",
        "tiff.DateTime",
        "tiff.Software",
    ):
        assert name in report.removed_fields
    data = out.read_bytes()
    for value in (
        b"JaneDoe",
        b"jdoe",
        b"PAT-778899",
        b"SS1234",
        b"Dr Artist",
        b"pathlab-host",
        b"2024:01:02",
        b"01/02/24",
        b"ScanSoft",
    ):
        assert value not in data, value
    assert not any(k.startswith(("tiff.Artist", "tiff.DateTime")) for k in after.properties)
    assert after.properties["aperio.MPP"] == "0.25"
    assert after.level_dimensions == before.level_dimensions
    for level in range(2):
        size = before.level_dimensions[level]
        assert np.array_equal(
            np.asarray(before.read_region((0, 0), level, size)),
            np.asarray(after.read_region((0, 0), level, size)),
        )


@pytest.mark.parametrize(
    ("name", "payload", "detected"),
    [
        ("biopsy.mrxs", b"\xff\xd8\xff\xe0" + b"\0" * 300, "mirax"),
        ("Slidedat.ini", b"[GENERAL]\r\nSLIDE_ID = 1234\r\n", "mirax"),
        ("biopsy.vms", b"[Virtual Microscope Specimen]\r\nNoLayers=1\r\n", "hamamatsu-vms"),
        ("upload.bin", b"[Virtual Microscope Specimen]\r\nNoLayers=1\r\n", "hamamatsu-vms"),
        ("biopsy.VMU", b"[Uncompressed Virtual Microscope Specimen]\r\n", "hamamatsu-vmu"),
    ],
)
def test_multi_file_formats_refused_naming_the_format_and_missing_parts(
    tmp_path: Path, name: str, payload: bytes, detected: str
) -> None:
    src = tmp_path / "upload"  # the stored copy has no name of its own: the upload's is given
    src.write_bytes(payload)
    assert detect_slide_format(src, name) == detected
    with pytest.raises(UnsupportedFormatError) as info, io.BytesIO() as dst:
        deidentify_svs(src, dst, name=name)
    assert info.value.detected == detected
    assert detected in str(info.value) and "multi-file" in str(info.value)
    assert "Aperio SVS" in str(info.value)


def test_every_broken_sample_is_refused(tmp_path: Path) -> None:
    from tests.samples import broken_slides

    for name, data in broken_slides(SAMPLE.read_bytes()).values():
        src = tmp_path / name
        src.write_bytes(data)
        with pytest.raises((ValidationError, UnsupportedFormatError)), io.BytesIO() as dst:
            deidentify_svs(src, dst, name=name)
