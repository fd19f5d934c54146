"""Deep Zoom tiles from a de-identified slide stored as an encrypted segmented blob.

Tiles are compared with what OpenSlide's DeepZoomGenerator renders for the same address
(colour included: a stored Aperio JPEG tile sent without the Adobe RGB marker decodes with
wrong colours, and these comparisons catch it). Passthrough tiles must be the stored bytes,
tampered segments must raise IntegrityError, and the blob is never decrypted as a whole.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from cpms_hub.crypto import HEADER_SIZE, TAG_SIZE, SegmentedReader, encrypt_file, new_data_key
from cpms_hub.domain.errors import IntegrityError, NotFoundError, ValidationError
from cpms_hub.imaging import deidentify_svs
from cpms_hub.imaging.slide_tiles import SlideTileSource, _LruCache
from tests.imaging.test_slide_deid import SAMPLE

pytestmark = pytest.mark.skipif(SAMPLE is None, reason="CMU-1-Small-Region.svs not present")

KEY = new_data_key()
BLOB = "slide-3f2a"
SEGMENT = 16 * 1024


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiles") / "deid.svs"
    with open(out, "w+b") as dst:
        deidentify_svs(SAMPLE, dst)
    return out


@pytest.fixture(scope="module")
def blob(slide_path: Path) -> bytes:
    dst = io.BytesIO()
    with open(slide_path, "rb") as src:
        encrypt_file(KEY, src, dst, blob_id=BLOB, segment_size=SEGMENT)
    return dst.getvalue()


def _open(blob: bytes, **kwargs) -> SlideTileSource:
    return SlideTileSource.from_blob(KEY, io.BytesIO(blob), blob_id=BLOB, **kwargs)


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def _compare_with_openslide(source: SlideTileSource, path: Path, levels) -> dict:
    """Per level: (mean abs diff, worst tile diff, worst passthrough diff)."""
    generator = DeepZoomGenerator(openslide.OpenSlide(path), tile_size=source.tile_size, overlap=0)
    results = {}
    for z in levels:
        info = source.levels[z]
        diffs, passthrough = [], [0.0]
        for row in range(info.rows):
            for col in range(info.columns):
                data, media_type = source.tile(z, col, row)
                assert media_type == "image/jpeg"
                ours = _decode(data)
                theirs = np.asarray(generator.get_tile(z, (col, row)).convert("RGB")).astype(int)
                if ours.shape != theirs.shape:
                    # OpenSlide's thumbnail() keeps the aspect ratio: off by one pixel at most
                    assert all(
                        abs(a - b) <= 1 for a, b in zip(ours.shape, theirs.shape, strict=True)
                    )
                    continue
                diff = float(np.abs(ours - theirs).mean(axis=(0, 1)).max())
                diffs.append(diff)
                if b"Adobe" in data[:40] and data[2:4] == b"\xff\xee":
                    passthrough.append(diff)
        results[z] = (float(np.mean(diffs)), max(diffs), max(passthrough))
    return results


def test_deep_zoom_geometry_matches_openslide(blob: bytes, slide_path: Path) -> None:
    generator = DeepZoomGenerator(openslide.OpenSlide(slide_path), tile_size=240, overlap=0)
    with _open(blob) as source:
        assert source.tile_size == 240  # the stored tile size: level 0 passes through
        assert tuple((lv.width, lv.height) for lv in source.levels) == (generator.level_dimensions)
        assert tuple((lv.columns, lv.rows) for lv in source.levels) == generator.level_tiles
        assert [lv.stored_level for lv in source.levels].count(0) == 1
        assert source.levels[-1].stored_level == 0
        root = ET.fromstring(source.dzi())  # noqa: S314 - our own output
        ns = "{http://schemas.microsoft.com/deepzoom/2008}"
        assert root.tag == f"{ns}Image"
        assert (root.get("TileSize"), root.get("Overlap"), root.get("Format")) == (
            "240",
            "0",
            "jpeg",
        )
        size = root.find(f"{ns}Size")
        assert (size.get("Width"), size.get("Height")) == ("2220", "2967")


def test_properties(blob: bytes) -> None:
    with _open(blob) as source:
        props = source.properties
        assert props.deidentified is True
        assert props.microns_per_pixel == pytest.approx(0.499)
        assert props.objective_power == 20
        assert (props.width, props.height) == (2220, 2967)
    with SlideTileSource.from_path(SAMPLE) as original:
        assert original.properties.deidentified is False


def test_stored_tiles_pass_through_without_decode(blob: bytes, slide_path: Path) -> None:
    page = tifffile.TiffFile(slide_path).pages[0]
    raw = slide_path.read_bytes()
    offset, count = page.dataoffsets[15], page.databytecounts[15]  # row 1, column 5 of 10
    stored = raw[offset : offset + count]
    with _open(blob) as source:
        data, _ = source.tile(len(source.levels) - 1, 5, 1)
    assert data.endswith(stored[2:])  # the stored entropy-coded data, byte for byte
    assert data.startswith(b"\xff\xd8\xff\xee\x00\x0eAdobe")  # RGB, no YCbCr transform
    assert page.jpegtables[2:-2] in data


def test_without_adobe_marker_colours_are_wrong(slide_path: Path) -> None:
    """Why the marker is there: the bare stored tile decodes as YCbCr, far from the truth."""
    page = tifffile.TiffFile(slide_path).pages[0]
    raw = slide_path.read_bytes()
    stored = raw[page.dataoffsets[15] : page.dataoffsets[15] + page.databytecounts[15]]
    naive = stored[:2] + page.jpegtables[2:-2] + stored[2:]
    truth = np.asarray(
        openslide.OpenSlide(slide_path).read_region((1200, 240), 0, (240, 240)).convert("RGB")
    ).astype(int)
    assert np.abs(_decode(naive) - truth).mean() > 20


def test_tiles_match_openslide_deepzoom(blob: bytes, slide_path: Path) -> None:
    with _open(blob) as source:
        top = len(source.levels) - 1
        results = _compare_with_openslide(source, slide_path, range(4, top + 1))
    for z, (mean, worst, passthrough) in results.items():
        if z >= top - 3:  # at most 8x below the stored level: resized straight from it
            assert mean < 3, (z, mean)
            assert worst < 8, (z, worst)
        else:  # built from the level above in 2x steps (OpenSlide resizes once): tiny tiles
            assert mean < 5, (z, mean)
        assert passthrough == 0, (z, passthrough)  # stored pixels, decoded identically


def _synthetic_pyramid(path: Path) -> None:
    """A two-level Aperio-style pyramid (level 1 at 1/4) with 256 px RGB JPEG tiles."""
    rng = np.random.default_rng(7)
    w, h = 3000, 2200
    small = rng.integers(0, 256, (h // 64 + 2, w // 64 + 2, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(small).resize((w + 128, h + 128), Image.Resampling.BICUBIC))[
        :h, :w
    ]
    header = "Aperio Image Library v12.0.0\r\n"
    with tifffile.TiffWriter(path) as tif:
        for factor in (1, 4):
            level = np.asarray(
                Image.fromarray(image).resize((w // factor, h // factor), Image.Resampling.LANCZOS)
            )
            desc = f"{header}{w}x{h} -> {w // factor}x{h // factor} - |AppMag = 20|MPP = 0.5"
            tif.write(
                level,
                tile=(256, 256),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": 90, "outcolorspace": "RGB"},
                description=desc,
                metadata=None,
            )


def test_pyramid_levels_pass_through_and_intermediate_levels_resize(tmp_path: Path) -> None:
    path = tmp_path / "pyramid.svs"
    _synthetic_pyramid(path)
    assert openslide.OpenSlide(path).level_count == 2
    encrypted = io.BytesIO()
    with open(path, "rb") as src:
        encrypt_file(KEY, src, encrypted, blob_id=BLOB)
    with _open(encrypted.getvalue()) as source:
        top = len(source.levels) - 1
        assert source.levels[top].stored_level == 0
        assert source.levels[top - 2].stored_level == 1  # 750x550: the 1/4 level
        assert source.levels[top - 1].stored_level is None
        results = _compare_with_openslide(source, path, range(top - 4, top + 1))
    for z, (mean, _worst, passthrough) in results.items():
        assert mean < 3, (z, mean)
        assert passthrough < 3, (z, passthrough)


def test_tampered_segment_raises_integrity_error(blob: bytes, slide_path: Path) -> None:
    page = tifffile.TiffFile(slide_path).pages[0]
    # the segment holding the middle of tile 66 (row 6, column 6 of 10)
    segment = (page.dataoffsets[66] + page.databytecounts[66] // 2) // SEGMENT
    at = HEADER_SIZE + segment * (SEGMENT + TAG_SIZE) + 100
    tampered = bytearray(blob)
    tampered[at] ^= 0x01
    with _open(bytes(tampered)) as source:
        top = len(source.levels) - 1
        with pytest.raises(IntegrityError):
            source.tile(top, 6, 6)
        with pytest.raises(IntegrityError):  # decoded paths (lower levels) as well
            source.tile(top - 1, 3, 3)
        source.tile(top, 0, 0)  # the rest of the slide still serves


def test_blob_is_never_decrypted_as_a_whole(blob: bytes) -> None:
    class CountingFile(io.BytesIO):
        read_bytes = 0

        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            CountingFile.read_bytes += len(data)
            return data

    src = CountingFile(blob)
    with SlideTileSource.from_blob(KEY, src, blob_id=BLOB) as source:
        top = len(source.levels) - 1
        before = CountingFile.read_bytes
        source.tile(top, 4, 4)
        assert CountingFile.read_bytes - before <= 2 * (SEGMENT + TAG_SIZE)
    assert CountingFile.read_bytes < len(blob) // 2


def test_addresses_outside_the_pyramid(blob: bytes) -> None:
    with _open(blob) as source:
        top = len(source.levels) - 1
        for level, col, row in (
            (top + 1, 0, 0),
            (-1, 0, 0),
            (top, 10, 0),
            (top, 0, 13),
            (top, -1, 0),
        ):
            with pytest.raises(NotFoundError):
                source.tile(level, col, row)


def test_wrong_key_or_blob_id_refused(blob: bytes) -> None:
    with pytest.raises(IntegrityError):
        SlideTileSource.from_blob(new_data_key(), io.BytesIO(blob), blob_id=BLOB)
    with pytest.raises(IntegrityError):
        SlideTileSource.from_blob(KEY, io.BytesIO(blob), blob_id="other-blob")


def test_blob_that_is_not_a_slide_refused() -> None:
    dst = io.BytesIO()
    encrypt_file(KEY, io.BytesIO(b"not a tiff at all" * 100), dst, blob_id=BLOB)
    with pytest.raises(ValidationError):
        SlideTileSource.from_blob(KEY, io.BytesIO(dst.getvalue()), blob_id=BLOB)


def test_cache_stays_within_its_byte_budget() -> None:
    cache = _LruCache(1000)
    for i in range(50):
        cache.put(("k", i), b"x" * 300, 300)
        assert cache._used <= 1000
    assert cache.get(("k", 49)) is not None and cache.get(("k", 0)) is None
    cache.put(("big",), b"x" * 2000, 2000)  # larger than the budget: not kept
    assert cache.get(("big",)) is None


def test_segmented_reader_is_what_is_read(blob: bytes) -> None:
    # sanity: the blob decrypts to the de-identified slide
    reader = SegmentedReader(KEY, io.BytesIO(blob), blob_id=BLOB)
    assert reader.read_at(0, 4) in (b"II*\0", b"MM\0*")


def test_every_tampered_segment_is_detected_or_unread(blob: bytes, slide_path: Path) -> None:
    """Tamper each segment in turn: serving level 0 either raises IntegrityError or never
    touched that segment (thumbnail and zeroed label/macro areas) - nothing else escapes."""
    page = tifffile.TiffFile(slide_path).pages[0]
    tile_segments = {
        s
        for off, n in zip(page.dataoffsets, page.databytecounts, strict=True)
        for s in range(off // SEGMENT, (off + n - 1) // SEGMENT + 1)
    }
    count = (len(blob) - HEADER_SIZE + SEGMENT + TAG_SIZE - 1) // (SEGMENT + TAG_SIZE)
    for segment in range(count):
        tampered = bytearray(blob)
        tampered[HEADER_SIZE + segment * (SEGMENT + TAG_SIZE) + 5] ^= 0x01
        try:
            with _open(bytes(tampered), cache_bytes=0) as source:
                top = source.levels[-1]
                for row in range(top.rows):
                    for col in range(top.columns):
                        source.tile(top.index, col, row)
        except IntegrityError:
            continue
        assert segment not in tile_segments, segment


def test_jpeg2000_tiles_are_decoded_and_sent_as_jpeg(tmp_path: Path) -> None:
    """Browsers cannot show JPEG 2000 (Aperio 33003/33005): such tiles are re-encoded."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(small).resize((700, 500), Image.Resampling.BICUBIC))
    path = tmp_path / "j2k.tif"
    desc = "Aperio Image Library v12.0.0\r\n700x500 [0,0 700x500] (256x256) J2K/YUV16 Q=70"
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            image,
            tile=(256, 256),
            photometric="rgb",
            compression="jpeg2000",
            compressionargs={"level": 100},
            description=desc,
            metadata=None,
        )
    encrypted = io.BytesIO()
    with open(path, "rb") as src:
        encrypt_file(KEY, src, encrypted, blob_id=BLOB)
    with _open(encrypted.getvalue()) as source:
        top = source.levels[-1]
        assert top.stored_level == 0 and source.tile_size == 256
        for row in range(top.rows):
            for col in range(top.columns):
                data, media_type = source.tile(top.index, col, row)
                assert media_type == "image/jpeg" and data.startswith(b"\xff\xd8")
                ours = _decode(data)
                truth = image[row * 256 : (row + 1) * 256, col * 256 : (col + 1) * 256]
                assert ours.shape == truth.shape
                assert np.abs(ours - truth.astype(int)).mean() < 3


def test_ready_tile_is_the_tile_without_pixel_work(blob: bytes, slide_path: Path) -> None:
    """What a server may serve inline: passthrough tiles, and made tiles once cached."""
    with _open(blob) as source:
        top = len(source.levels) - 1
        assert source.ready_tile(top, 5, 1) == source.tile(top, 5, 1)  # stored, passthrough
        info = source.levels[top]
        edge = (info.columns - 1, info.rows - 1)  # a padded stored tile: cropped, so decoded
        assert source.ready_tile(top, *edge) is None
        made = source.tile(top, *edge)
        assert source.ready_tile(top, *edge) == made  # now from the cache
        assert source.ready_tile(top - 1, 2, 2) is None  # intermediate level: resized
        assert source.ready_tile(top - 1, 2, 2) is None  # asking does not make it
        assert source.tile(top - 1, 2, 2) == source.ready_tile(top - 1, 2, 2)
        with pytest.raises(NotFoundError):
            source.ready_tile(top, info.columns, 0)


def test_ready_tile_authenticates_what_it_reads(blob: bytes, slide_path: Path) -> None:
    page = tifffile.TiffFile(slide_path).pages[0]
    segment = (page.dataoffsets[66] + page.databytecounts[66] // 2) // SEGMENT
    tampered = bytearray(blob)
    tampered[HEADER_SIZE + segment * (SEGMENT + TAG_SIZE) + 100] ^= 0x01
    with _open(bytes(tampered)) as source:
        top = len(source.levels) - 1
        with pytest.raises(IntegrityError):
            source.ready_tile(top, 6, 6)
        assert source.ready_tile(top, 0, 0) is not None
