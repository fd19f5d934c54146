"""Deep Zoom tiles of a tiled, pyramidal TIFF slide (Aperio SVS) read from an encrypted blob.

References: Microsoft, *Deep Zoom file format overview* (DZI descriptor, level ``z`` has size
``ceil(size / 2**(max_level - z))``, tiles of ``TileSize`` with ``Overlap``); Adobe, *TIFF
Revision 6.0* section 15 (tiled images) and the TIFF Technical Note 2 (JPEG compression,
``JPEGTables`` holding the tables shared by abbreviated tile streams); ITU T.81 / the Adobe
"DCT filter" APP14 marker (``transform = 0``: the components are RGB, no YCbCr conversion);
the OpenSlide "Aperio format" page (levels are tiled IFDs; JPEG tiles whose TIFF
PhotometricInterpretation is RGB while the JPEG stream says nothing).

Design:

* The blob is opened with :class:`~cpms_hub.crypto.segmented.SegmentedReader` (each read
  authenticates only the 16-64 KiB segments it touches) wrapped in ``io.BufferedReader`` for
  tifffile, which parses the directories. Tile bytes are then read with ``read_at`` straight
  from the reader: **the file is never decrypted as a whole**, and a tampered segment raises
  :class:`~cpms_hub.domain.errors.IntegrityError` from the read that touches it.
* The Deep Zoom tile size is the stored tile size (Aperio: 240 or 256 px) when the stored
  tiles are square and 64-1024 px, else 256; the overlap is 0. Deep Zoom levels whose size
  equals a stored pyramid level (within one pixel) are then served by **passthrough**: the
  stored JPEG tile bytes become a standalone JPEG by splicing in the ``JPEGTables`` and,
  when the TIFF says the samples are RGB, an Adobe APP14 marker with ``transform = 0``
  (without it browsers apply a YCbCr-to-RGB conversion and show wrong colours). No pixel
  is decoded.
* Edge tiles of those levels (stored tiles are padded to the full tile size), tiles of
  stored levels in other codecs (e.g. Aperio JPEG 2000, which browsers cannot show) and all
  other Deep Zoom levels are decoded (tifffile/imagecodecs), cropped or resized with Pillow
  (Lanczos) and encoded as JPEG. Levels more than three octaves below the nearest stored
  level are built from the 2x2 tiles of the level above, so the work per tile stays bounded.
* Decoded stored tiles and produced tiles share one LRU cache with a byte budget.

A :class:`SlideTileSource` is a context manager and is safe to share between threads (one
lock serialises reads of the underlying file).
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from types import TracebackType
from typing import BinaryIO

import numpy as np
import tifffile
from PIL import Image

from cpms_hub.crypto.segmented import SegmentedReader
from cpms_hub.domain.errors import CpmsError, NotFoundError, ValidationError

from .errors import UnsupportedFormatError
from .slide_deid import MAX_SLIDE_SIDE, is_deidentified_directory

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_TILE_SIZE",
    "JPEG_QUALITY",
    "DeepZoomLevel",
    "SlideProperties",
    "SlideTileSource",
]

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
#: Deep Zoom tile size when the stored tiles are not square or not between 64 and 1024 px
DEFAULT_TILE_SIZE = 256
#: quality of tiles that are decoded and re-encoded (4:4:4, no chroma subsampling)
JPEG_QUALITY = 95
_MAX_TILE_SIDE = 4096
#: a Deep Zoom level further than this factor below a stored level is built from its children
_MAX_RESIZE_FACTOR = 8.0
_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"  # APP14, transform 0
_JPEG = 7
_PHOTOMETRIC_RGB = 2
_PHOTOMETRIC_YCBCR = 6


@dataclass(frozen=True, slots=True)
class DeepZoomLevel:
    """One Deep Zoom level: size, tile grid and the stored level it passes through, if any."""

    index: int
    width: int
    height: int
    columns: int
    rows: int
    stored_level: int | None


@dataclass(frozen=True, slots=True)
class SlideProperties:
    """What a viewer needs to know about a slide (no identifying fields)."""

    width: int
    height: int
    stored_levels: tuple[tuple[int, int], ...]
    tile_size: int
    microns_per_pixel: float | None
    objective_power: float | None
    deidentified: bool


@dataclass(frozen=True, slots=True)
class _Stored:
    page: tifffile.TiffPage
    width: int
    height: int
    tile_width: int
    tile_height: int
    columns: int
    offsets: tuple[int, ...]
    counts: tuple[int, ...]
    jpeg_prefix: bytes | None  # SOI + [APP14] + tables, for passthrough; None if not JPEG
    jpegtables: bytes | None
    decode: Callable  # tifffile's decoder of one tile, built (reading tags) at open time


class _LruCache:
    """A dict-based LRU bounded by the total size of its values in bytes."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._used = 0
        self._items: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> object | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: tuple, value: object, size: int) -> None:
        if size > self._budget:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._used -= old[1]
            self._items[key] = (value, size)
            self._used += size
            while self._used > self._budget:
                _key, (_value, freed) = self._items.popitem(last=False)
                self._used -= freed


def _encode_jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=JPEG_QUALITY, subsampling=0)
    return out.getvalue()


def _jpeg_prefix(tables: bytes | None, rgb: bool) -> bytes:
    """SOI, an Adobe marker for RGB data, and the shared tables without their SOI/EOI."""
    body = b""
    if tables:
        if not (tables.startswith(b"\xff\xd8") and tables.endswith(b"\xff\xd9")):
            raise ValidationError("slide", "JPEGTables is not a JPEG tables stream")
        body = tables[2:-2]
    return b"\xff\xd8" + (_ADOBE_RGB if rgb else b"") + body


def _after_app_markers(tile: bytes) -> int:
    """Where a tile's stream continues after its SOI and any JFIF/Adobe markers (which
    would contradict ours): the caller joins from there, so the tile is copied once."""
    if not tile.startswith(b"\xff\xd8"):
        raise ValidationError("slide", "stored tile is not a JPEG stream")
    pos = 2
    while pos + 4 <= len(tile) and tile[pos] == 0xFF and tile[pos + 1] in (0xE0, 0xEE):
        pos += 2 + struct.unpack_from(">H", tile, pos + 2)[0]
    return pos


class SlideTileSource:
    """Deep Zoom tiles of a pyramidal tiled TIFF (Aperio SVS), plaintext or encrypted.

    Open with :meth:`from_blob` (an encrypted segmented blob) or :meth:`from_path`.
    """

    def __init__(
        self,
        fh: BinaryIO,
        read_at: Callable[[int, int], bytes],
        *,
        close: Callable[[], None] = lambda: None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self._lock = threading.RLock()
        self._read_at = read_at
        self._close = close
        self._cache = _LruCache(cache_bytes)
        try:
            self._tiff = tifffile.TiffFile(fh)
        except CpmsError:
            close()
            raise
        except Exception as exc:  # tifffile raises many kinds for malformed files
            close()
            raise ValidationError(
                "slide", f"not a readable TIFF file ({type(exc).__name__})"
            ) from None
        try:
            self._stored = self._read_levels()
            base = self._stored[0]
            square = base.tile_width == base.tile_height
            self.tile_size = (
                base.tile_width if square and 64 <= base.tile_width <= 1024 else DEFAULT_TILE_SIZE
            )
            self.levels = self._deep_zoom_levels()
            self.properties = self._properties()
        except Exception:
            self.close()
            raise

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def from_blob(
        cls,
        data_key: bytes,
        src: BinaryIO,
        *,
        blob_id: str,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> SlideTileSource:
        """Open a slide stored as a segmented blob in ``src`` (not closed by :meth:`close`)."""
        reader = SegmentedReader(data_key, src, blob_id=blob_id)
        buffered = io.BufferedReader(reader, buffer_size=64 * 1024)
        return cls(buffered, reader.read_at, close=buffered.close, cache_bytes=cache_bytes)

    @classmethod
    def from_path(
        cls, path: str | PathLike[str], *, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> SlideTileSource:
        """Open a plaintext slide file (tests, benchmarks, import checks)."""
        fh = open(path, "rb")  # closed by close()
        fd = fh.fileno()
        return cls(fh, lambda off, n: os.pread(fd, n, off), close=fh.close, cache_bytes=cache_bytes)

    def _read_levels(self) -> tuple[_Stored, ...]:
        pages = list(self._tiff.pages)
        if not pages:
            raise ValidationError("slide", "TIFF file has no image")
        levels: list[_Stored] = []
        for page in pages:
            if not isinstance(page, tifffile.TiffPage) or not page.is_tiled:
                continue
            if levels and not (page.imagewidth < levels[-1].width):
                continue
            levels.append(self._stored_level(page))
        if not levels or levels[0].page is not pages[0]:
            raise UnsupportedFormatError(
                "tiff", "the full-resolution image is not tiled (not a pyramidal slide)"
            )
        return tuple(levels)

    def _stored_level(self, page: tifffile.TiffPage) -> _Stored:
        width, height = page.imagewidth, page.imagelength
        tw, th = page.tilewidth, page.tilelength
        if not (0 < width <= MAX_SLIDE_SIDE and 0 < height <= MAX_SLIDE_SIDE):
            raise ValidationError("slide", "image has absurd dimensions")
        if not (0 < tw <= _MAX_TILE_SIDE and 0 < th <= _MAX_TILE_SIDE):
            raise ValidationError("slide", "image has absurd tile dimensions")
        if page.samplesperpixel not in (3, 4) or page.bitspersample != 8:
            raise UnsupportedFormatError("tiff", "only 8-bit RGB slides are supported")
        columns = -(-width // tw)
        offsets, counts = tuple(page.dataoffsets), tuple(page.databytecounts)
        if len(offsets) != columns * -(-height // th) or len(counts) != len(offsets):
            raise ValidationError("slide", "image has a wrong number of tiles")
        prefix = None
        if (
            page.compression == _JPEG
            and page.photometric in (_PHOTOMETRIC_RGB, _PHOTOMETRIC_YCBCR)
            and page.samplesperpixel == 3
            and page.planarconfig == 1
        ):
            prefix = _jpeg_prefix(page.jpegtables, page.photometric == _PHOTOMETRIC_RGB)
        tables = page.jpegtables
        return _Stored(
            page, width, height, tw, th, columns, offsets, counts, prefix, tables, page.decode
        )

    def _deep_zoom_levels(self) -> tuple[DeepZoomLevel, ...]:
        base = self._stored[0]
        top = (
            math.ceil(math.log2(max(base.width, base.height)))
            if max(base.width, base.height) > 1
            else 0
        )
        levels = []
        for z in range(top + 1):
            scale = 2 ** (top - z)
            width, height = -(-base.width // scale), -(-base.height // scale)
            stored = None
            for i, level in enumerate(self._stored):
                if (
                    abs(level.width - width) <= 1
                    and abs(level.height - height) <= 1
                    and level.tile_width == level.tile_height == self.tile_size
                ):
                    stored = i
                    break
            levels.append(
                DeepZoomLevel(
                    z,
                    width,
                    height,
                    -(-width // self.tile_size),
                    -(-height // self.tile_size),
                    stored,
                )
            )
        return tuple(levels)

    def _properties(self) -> SlideProperties:
        base = self._stored[0]
        description = base.page.description or ""
        mpp = _field(description, "MPP")
        power = _field(description, "AppMag")
        associated = [
            i
            for i, page in enumerate(self._tiff.pages)
            if isinstance(page, tifffile.TiffPage) and not page.is_tiled and i != 1
        ]
        deidentified = not associated and all(
            is_deidentified_directory(page.description or "", page.tags.keys())
            for page in self._tiff.pages
            if isinstance(page, tifffile.TiffPage)
        )
        return SlideProperties(
            width=base.width,
            height=base.height,
            stored_levels=tuple((s.width, s.height) for s in self._stored),
            tile_size=self.tile_size,
            microns_per_pixel=mpp,
            objective_power=power,
            deidentified=deidentified,
        )

    # -- Deep Zoom ---------------------------------------------------------------------------

    def dzi(self) -> str:
        """The Deep Zoom descriptor (XML) of the slide."""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="jpeg" '
            f'Overlap="0" TileSize="{self.tile_size}">'
            f'<Size Width="{self.properties.width}" Height="{self.properties.height}"/>'
            "</Image>"
        )

    def tile(self, level: int, col: int, row: int) -> tuple[bytes, str]:
        """The JPEG tile at a Deep Zoom address, as ``(bytes, media_type)``.

        Raises NotFoundError for addresses outside the pyramid and IntegrityError when the
        stored data fails authentication.
        """
        ready = self.ready_tile(level, col, row)
        if ready is not None:
            return ready
        key = ("jpeg", level, col, row)
        data = _encode_jpeg(self._pixels(level, col, row))
        self._cache.put(key, data, len(data))
        return data, "image/jpeg"

    def ready_tile(self, level: int, col: int, row: int) -> tuple[bytes, str] | None:
        """The tile if it costs no pixel work - a stored tile passed through (one read
        of a few KiB, authenticated) or one already made and cached - else None (then
        :meth:`tile` decodes, resizes and encodes: milliseconds).

        So a server can serve the common case inline and send only the rest to a
        worker thread. Raises like :meth:`tile`.
        """
        info, x0, y0, w, h = self._address(level, col, row)
        if info.stored_level is not None:
            stored = self._stored[info.stored_level]
            if (
                stored.jpeg_prefix is not None
                and w == stored.tile_width
                and h == stored.tile_height
                and x0 + w <= stored.width
                and y0 + h <= stored.height
            ):
                index = row * stored.columns + col
                raw = self._raw_tile(stored, index)
                rest = memoryview(raw)[_after_app_markers(raw) :]
                return b"".join((stored.jpeg_prefix, rest)), "image/jpeg"
        data = self._cache.get(("jpeg", level, col, row))
        return None if data is None else (data, "image/jpeg")  # type: ignore[return-value]

    def _address(self, level: int, col: int, row: int) -> tuple[DeepZoomLevel, int, int, int, int]:
        if not 0 <= level < len(self.levels):
            raise NotFoundError(f"tile level {level} does not exist")
        info = self.levels[level]
        if not (0 <= col < info.columns and 0 <= row < info.rows):
            raise NotFoundError(f"tile {col},{row} does not exist at level {level}")
        x0, y0 = col * self.tile_size, row * self.tile_size
        return (
            info,
            x0,
            y0,
            min(self.tile_size, info.width - x0),
            min(self.tile_size, info.height - y0),
        )

    def _pixels(self, level: int, col: int, row: int) -> np.ndarray:
        """RGB pixels (h, w, 3) of one Deep Zoom tile."""
        key = ("px", level, col, row)
        cached = self._cache.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]
        info, x0, y0, w, h = self._address(level, col, row)
        if info.stored_level is not None:
            pixels = self._region(info.stored_level, x0, y0, w, h)
        else:
            scale = 2.0 ** (len(self.levels) - 1 - level)
            base = self._stored[0]
            best = 0
            for i, stored in enumerate(self._stored):
                if base.width / stored.width <= scale * 1.01:
                    best = i
            stored = self._stored[best]
            fx, fy = scale * stored.width / base.width, scale * stored.height / base.height
            if max(fx, fy) > _MAX_RESIZE_FACTOR and level + 1 < len(self.levels):
                pixels = self._from_children(level, col, row, w, h)
            else:
                lx0, ly0 = x0 * fx, y0 * fy
                lx1, ly1 = min((x0 + w) * fx, stored.width), min((y0 + h) * fy, stored.height)
                ix0, iy0 = int(lx0), int(ly0)
                ix1, iy1 = min(math.ceil(lx1), stored.width), min(math.ceil(ly1), stored.height)
                region = self._region(best, ix0, iy0, ix1 - ix0, iy1 - iy0)
                image = Image.fromarray(region).resize(
                    (w, h),
                    Image.Resampling.LANCZOS,
                    box=(lx0 - ix0, ly0 - iy0, lx1 - ix0, ly1 - iy0),
                )
                pixels = np.asarray(image)
        pixels.flags.writeable = False  # shared through the cache
        self._cache.put(key, pixels, pixels.nbytes)
        return pixels

    def _from_children(self, level: int, col: int, row: int, w: int, h: int) -> np.ndarray:
        size = self.tile_size
        below = self.levels[level + 1]
        canvas = np.zeros((2 * size, 2 * size, 3), np.uint8)
        cw = ch = 0
        for dy in (0, 1):
            for dx in (0, 1):
                c, r = 2 * col + dx, 2 * row + dy
                if c < below.columns and r < below.rows:
                    child = self._pixels(level + 1, c, r)
                    canvas[
                        dy * size : dy * size + child.shape[0],
                        dx * size : dx * size + child.shape[1],
                    ] = child
                    if dy == 0:
                        cw += child.shape[1]
                    if dx == 0:
                        ch += child.shape[0]
        image = Image.fromarray(canvas[:ch, :cw]).resize((w, h), Image.Resampling.LANCZOS)
        return np.asarray(image)

    def _region(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB pixels of a rectangle of stored level ``level``; edges replicate the border."""
        stored = self._stored[level]
        out = np.empty((h, w, 3), np.uint8)
        cx1, cy1 = min(x + w, stored.width), min(y + h, stored.height)
        tw, th = stored.tile_width, stored.tile_height
        for ty in range(y // th, (cy1 - 1) // th + 1):
            for tx in range(x // tw, (cx1 - 1) // tw + 1):
                tile = self._decoded_tile(level, ty * stored.columns + tx)
                sx0, sy0 = max(x, tx * tw), max(y, ty * th)
                sx1, sy1 = min(cx1, (tx + 1) * tw), min(cy1, (ty + 1) * th)
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                    sy0 - ty * th : sy1 - ty * th, sx0 - tx * tw : sx1 - tx * tw, :3
                ]
        if cx1 - x < w:
            out[:, cx1 - x :] = out[:, cx1 - x - 1 : cx1 - x]
        if cy1 - y < h:
            out[cy1 - y :] = out[cy1 - y - 1 : cy1 - y]
        return out

    def _decoded_tile(self, level: int, index: int) -> np.ndarray:
        key = ("stored", level, index)
        cached = self._cache.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]
        stored = self._stored[level]
        raw = self._raw_tile(stored, index)
        try:
            decoded, _indices, _shape = stored.decode(raw, index, jpegtables=stored.jpegtables)
        except CpmsError:
            raise
        except Exception as exc:  # codec errors: corrupt tile data
            raise ValidationError(
                "slide",
                f"tile {index} of level {level} cannot be decoded ({type(exc).__name__})",
            ) from None
        if decoded is None:
            raise ValidationError("slide", f"tile {index} of level {level} is missing")
        pixels = np.ascontiguousarray(decoded[0])
        pixels.flags.writeable = False  # shared through the cache
        self._cache.put(key, pixels, pixels.nbytes)
        return pixels

    def _raw_tile(self, stored: _Stored, index: int) -> bytes:
        offset, count = stored.offsets[index], stored.counts[index]
        if count <= 0:
            raise ValidationError("slide", f"tile {index} is empty")
        with self._lock:
            data = self._read_at(offset, count)
        if len(data) != count:
            raise ValidationError("slide", f"tile {index} lies beyond the end of the file")
        return data

    # -- life cycle ------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            tiff = getattr(self, "_tiff", None)
            if tiff is not None:
                tiff.close()
            self._close()

    def __enter__(self) -> SlideTileSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _field(description: str, key: str) -> float | None:
    match = re.search(r"\|" + re.escape(key) + r" = ([0-9.]+)", description)
    if not match:
        return None
    try:
        return float(match.group(1))
    except ValueError:
        return None
