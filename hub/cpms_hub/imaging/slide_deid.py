"""De-identification of Aperio SVS whole-slide images on import.

An Aperio SVS file is a TIFF 6.0 file (or BigTIFF) whose directories (IFDs) are, in order:
the full-resolution level (tiled), optionally the thumbnail (stripped, second IFD), further
pyramid levels (tiled), then the *label* (slide label photo: barcode, often the patient's
name or number) and the *macro* (photo of the whole glass slide, label included). Every
ImageDescription starts with ``Aperio`` and carries ``|key = value`` pairs, some technical
(``AppMag``, ``MPP``) and some identifying (``Filename``, ``Date``, ``Time``, ``User``,
``Barcode``, ...). References: Adobe, *TIFF Revision 6.0* (1992), sections 2 (file
structure, IFDs) and 8 (baseline tags); the BigTIFF proposal (64-bit offsets, 20-byte
entries); the OpenSlide "Aperio format" page (openslide.org/formats/aperio), which fixes
how OpenSlide tells the thumbnail, label and macro apart and parses the description.

Design: the file is copied and then rewritten **in place at the byte level**, never
re-encoded, so every pyramid tile stays byte-for-byte identical (level-0 pixels are
unchanged by construction):

* Only tiled IFDs (pyramid levels) and the stripped IFD right after level 0 (the thumbnail,
  a downsample of the tissue) are kept. Every other IFD (label, macro, anything unknown) is
  unlinked from the IFD chain and its entries, out-of-line values and strip data are
  overwritten with zeros, so neither OpenSlide nor a hex editor finds them.
* Each kept IFD is rewritten at its old offset with an **allow-list** of tags needed to
  decode the image (dimensions, compression, tiles, JPEG tables, colour); every other tag
  (DateTime, Artist, HostComputer, DocumentName, Software, XMP, private tags, ...) is
  dropped and its out-of-line value zeroed.
* ImageDescription keeps the technical header fragments OpenSlide relies on and only the
  allow-listed ``key = value`` fields (magnification, resolution, scan geometry). Anything
  not known to be technical is dropped, which is why ``ScanScope ID`` (a scanner name an
  operator can set freely, which also ties the slide to a site) and ``ImageID`` (a key into
  the scanner's database) are dropped too: OpenSlide does not need them.
* IFDs holding sub-IFD, EXIF or GPS pointers are refused: their contents cannot be scrubbed
  by this module. Files other than Aperio SVS are refused with
  :class:`~cpms_hub.imaging.errors.UnsupportedFormatError` naming what was detected.

The dead space of removed images stays in the file as zeros (the file does not shrink).
On any error ``dst`` holds a partial copy and must be discarded by the caller.
"""

from __future__ import annotations

import re
import shutil
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from typing import BinaryIO

from cpms_hub.domain.errors import ValidationError

from .errors import UnsupportedFormatError

__all__ = [
    "MAX_SLIDE_SIDE",
    "MULTI_FILE_FORMATS",
    "SlideImportReport",
    "deidentify_svs",
    "detect_slide_format",
    "is_deidentified_directory",
]

#: largest width or height accepted (pixels); real slides stay well below 300,000
MAX_SLIDE_SIDE = 1 << 20
_MAX_IFDS = 64
_MAX_ENTRIES = 512
_MAX_TILE_SIDE = 16384

# TIFF field types: size in bytes of one value (TIFF 6.0 section 2; BigTIFF 16-18)
_TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
    16: 8,
    17: 8,
    18: 8,
}

#: tags a kept IFD may keep (everything else is removed and reported)
_KEPT_TAGS = {
    254: "NewSubfileType",
    255: "SubfileType",
    256: "ImageWidth",
    257: "ImageLength",
    258: "BitsPerSample",
    259: "Compression",
    262: "PhotometricInterpretation",
    266: "FillOrder",
    270: "ImageDescription",
    273: "StripOffsets",
    274: "Orientation",
    277: "SamplesPerPixel",
    278: "RowsPerStrip",
    279: "StripByteCounts",
    282: "XResolution",
    283: "YResolution",
    284: "PlanarConfiguration",
    296: "ResolutionUnit",
    317: "Predictor",
    318: "WhitePoint",
    319: "PrimaryChromaticities",
    320: "ColorMap",
    322: "TileWidth",
    323: "TileLength",
    324: "TileOffsets",
    325: "TileByteCounts",
    338: "ExtraSamples",
    339: "SampleFormat",
    347: "JPEGTables",
    529: "YCbCrCoefficients",
    530: "YCbCrSubSampling",
    531: "YCbCrPositioning",
    532: "ReferenceBlackWhite",
    32997: "ImageDepth",
    32998: "TileDepth",
    34675: "InterColorProfile",
}
_TAG_NAMES = {
    269: "DocumentName",
    285: "PageName",
    305: "Software",
    306: "DateTime",
    315: "Artist",
    316: "HostComputer",
    330: "SubIFDs",
    700: "XMP",
    33432: "Copyright",
    33723: "IPTC",
    34377: "Photoshop",
    34665: "ExifIFD",
    34853: "GPSIFD",
    37724: "ImageSourceData",
    42016: "ImageUniqueID",
}
_POINTER_TAGS = {330, 34665, 34853, 40965}

#: Aperio description fields that are technical (scan geometry, optics); all others go
_KEPT_APERIO_FIELDS = frozenset(
    {
        "AppMag",
        "MPP",
        "StripeWidth",
        "Filtered",
        "Focus Offset",
        "Left",
        "Top",
        "LineAreaXOffset",
        "LineAreaYOffset",
        "LineCameraSkew",
        "OriginalWidth",
        "OriginalHeight",
        "Originalheight",
        "Parmset",
        "Exposure Time",
        "Exposure Scale",
        "Gamma",
        "DisplayColor",
        "Compression Quality",
    }
)
# Header fragments of an Aperio description (before the first "|") that are technical.
_HEADER_FRAGMENTS = (
    re.compile(r"Aperio Image Library v?[0-9A-Za-z.]* ?"),
    re.compile(r"Aperio (Leica Biosystems )?[A-Za-z0-9 ]*v[0-9.]+ ?"),
    re.compile(r"\d+x\d+ \[\d+,\d+ \d+x\d+\] \(\d+x\d+\) [A-Z0-9]+(/[A-Z]+)? ?(Q=\d+)? ?"),
    re.compile(r"\d+x\d+ ?-> ?\d+x\d+ ?-? ?"),
    re.compile(r"(label|macro) \d+x\d+"),
    re.compile(r"\s*"),
)


@dataclass(frozen=True, slots=True)
class SlideImportReport:
    """What de-identification removed: names only, never values (no patient data).

    ``removed_images`` names the associated images dropped (``label``, ``macro``, or
    ``image #i`` for unknown ones); ``removed_fields`` the description fields
    (``aperio.Filename``) and TIFF tags (``tiff.DateTime``) removed, each once.
    """

    source_format: str
    width: int
    height: int
    levels: int
    kept_images: tuple[str, ...]
    removed_images: tuple[str, ...]
    removed_fields: tuple[str, ...]
    microns_per_pixel: float | None


@dataclass(frozen=True, slots=True)
class _Entry:
    tag: int
    type: int
    count: int
    raw: bytes  # the value/offset field exactly as stored
    value_offset: int | None  # file offset of an out-of-line value, else None

    @property
    def size(self) -> int:
        return _TYPE_SIZES.get(self.type, 1) * self.count


@dataclass(frozen=True, slots=True)
class _Ifd:
    offset: int
    entries: tuple[_Entry, ...]
    next_pointer_at: int  # file offset of the "next IFD" field

    def get(self, tag: int) -> _Entry | None:
        for entry in self.entries:
            if entry.tag == tag:
                return entry
        return None


class _Tiff:
    """Minimal TIFF / BigTIFF directory reader over a seekable file (TIFF 6.0 section 2)."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh = fh
        self.size = size
        head = self._read(0, 16)
        if head[:2] == b"II":
            self.bo = "<"
        elif head[:2] == b"MM":
            self.bo = ">"
        else:
            raise ValidationError("slide", "not a TIFF file (bad byte order mark)")
        magic = struct.unpack(self.bo + "H", head[2:4])[0]
        if magic == 42:
            self.big = False
            self.off_fmt, self.cnt_fmt, self.entry_size, self.word = "I", "H", 12, 4
            first = struct.unpack(self.bo + "I", head[4:8])[0]
        elif magic == 43:
            self.big = True
            self.off_fmt, self.cnt_fmt, self.entry_size, self.word = "Q", "Q", 20, 8
            first = struct.unpack(self.bo + "Q", head[8:16])[0]
        else:
            raise ValidationError("slide", "not a TIFF file (bad magic number)")
        self.first_pointer_at = 8 if self.big else 4
        self.ifds = self._read_chain(first)

    def _read(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > self.size:
            raise ValidationError("slide", "TIFF structure points beyond the end of the file")
        self.fh.seek(offset)
        data = self.fh.read(length)
        if len(data) != length:
            raise ValidationError("slide", "TIFF file is truncated")
        return data

    def _read_chain(self, offset: int) -> list[_Ifd]:
        ifds: list[_Ifd] = []
        seen: set[int] = set()
        while offset:
            if offset in seen or len(ifds) >= _MAX_IFDS:
                raise ValidationError("slide", "TIFF directory chain loops or is too long")
            seen.add(offset)
            ifd = self._read_ifd(offset)
            ifds.append(ifd)
            offset = struct.unpack(
                self.bo + self.off_fmt, self._read(ifd.next_pointer_at, self.word)
            )[0]
        if not ifds:
            raise ValidationError("slide", "TIFF file has no image directory")
        return ifds

    def _read_ifd(self, offset: int) -> _Ifd:
        csize = 8 if self.big else 2
        count = struct.unpack(self.bo + self.cnt_fmt, self._read(offset, csize))[0]
        if not 0 < count <= _MAX_ENTRIES:
            raise ValidationError("slide", f"TIFF directory has {count} entries")
        data = self._read(offset + csize, count * self.entry_size)
        entry_fmt = self.bo + ("HHQ" if self.big else "HHI")
        head = struct.calcsize(entry_fmt)
        entries = []
        for i in range(count):
            chunk = data[i * self.entry_size : (i + 1) * self.entry_size]
            tag, typ, n = struct.unpack(entry_fmt, chunk[:head])
            raw = chunk[head:]
            size = _TYPE_SIZES.get(typ, 1) * n
            value_offset = None
            if size > self.word:
                value_offset = struct.unpack(self.bo + self.off_fmt, raw)[0]
                if value_offset + size > self.size:
                    raise ValidationError("slide", f"TIFF tag {tag} points beyond the file")
            entries.append(_Entry(tag, typ, n, raw, value_offset))
        return _Ifd(offset, tuple(entries), offset + csize + count * self.entry_size)

    def values(self, entry: _Entry) -> tuple[int, ...]:
        """Integer values of a SHORT/LONG/LONG8 entry."""
        fmt = {3: "H", 4: "I", 16: "Q", 13: "I", 18: "Q"}.get(entry.type)
        if fmt is None:
            raise ValidationError("slide", f"TIFF tag {entry.tag} has an unexpected type")
        data = (
            entry.raw if entry.value_offset is None else self._read(entry.value_offset, entry.size)
        )
        return struct.unpack(f"{self.bo}{entry.count}{fmt}", data[: entry.size])

    def value(self, ifd: _Ifd, tag: int, default: int | None = None) -> int:
        entry = ifd.get(tag)
        if entry is None:
            if default is None:
                raise ValidationError("slide", f"TIFF directory lacks required tag {tag}")
            return default
        return self.values(entry)[0]

    def text(self, entry: _Entry) -> str:
        data = (
            entry.raw if entry.value_offset is None else self._read(entry.value_offset, entry.size)
        )
        return data[: entry.size].split(b"\0", 1)[0].decode("latin-1")

    def data_ranges(self, ifd: _Ifd) -> list[tuple[int, int]]:
        """(offset, length) of every strip or tile of ``ifd``, checked against the file."""
        tiled = ifd.get(324) is not None
        offsets = ifd.get(324 if tiled else 273)
        counts = ifd.get(325 if tiled else 279)
        if offsets is None or counts is None:
            raise ValidationError("slide", "TIFF directory has no image data offsets")
        offs, lens = self.values(offsets), self.values(counts)
        if len(offs) != len(lens):
            raise ValidationError("slide", "TIFF data offsets and byte counts differ in number")
        for off, length in zip(offs, lens, strict=True):
            if off + length > self.size:
                raise ValidationError("slide", "TIFF image data lies beyond the end of the file")
        return list(zip(offs, lens, strict=True))


#: formats whose image lives in several files; one uploaded file is never the whole slide.
#: File name endings (as uploaded) and the text their index file starts with.
MULTI_FILE_FORMATS: dict[str, str] = {
    ".mrxs": "mirax",
    ".vms": "hamamatsu-vms",
    ".vmu": "hamamatsu-vmu",
}
_MULTI_FILE_HEADS = (
    (b"[Virtual Microscope Specimen]", "hamamatsu-vms"),
    (b"[Uncompressed Virtual Microscope Specimen]", "hamamatsu-vmu"),
    (b"[GENERAL]", "mirax"),  # MIRAX Slidedat.ini, the index of the data folder
)
_MULTI_FILE_PARTS = {
    "mirax": "the .mrxs file names a folder of Slidedat.ini and Data*.dat files",
    "hamamatsu-vms": "the .vms file is an index of separate JPEG files",
    "hamamatsu-vmu": "the .vmu file is an index of separate raw image files",
}


def _multi_file_format(head: bytes, name: str | None) -> str | None:
    """The multi-file format a file belongs to, by its uploaded name or its first bytes."""
    suffix = "." + name.rsplit(".", 1)[-1].lower() if name and "." in name else ""
    if suffix in MULTI_FILE_FORMATS:
        return MULTI_FILE_FORMATS[suffix]
    text = head.lstrip(b"\xef\xbb\xbf\r\n\t ")
    for magic, fmt in _MULTI_FILE_HEADS:
        if text.startswith(magic):
            return fmt
    return None


def detect_slide_format(src_path: str | PathLike[str], name: str | None = None) -> str:
    """Name the slide format of a file: OpenSlide's vendor name, or a generic one.

    ``name`` is the file's name as uploaded (``src_path`` may be an anonymous in-memory
    file): multi-file formats are known by it, or by the text their index file opens with.
    """
    with open(src_path, "rb") as fh:
        head = fh.read(132)
    multi = _multi_file_format(head, name)
    if multi is not None:
        return multi
    if head[:2] in (b"II", b"MM"):
        try:
            import openslide  # local: optional for callers that only detect formats

            vendor = openslide.OpenSlide.detect_format(str(src_path))
        except Exception:  # detection is best effort
            vendor = None
        return vendor or "tiff"
    if head[128:132] == b"DICM":
        return "dicom"
    for magic, fmt in (
        (b"\xff\xd8\xff", "jpeg"),
        (b"\x89PNG", "png"),
        (b"PK\x03\x04", "zip"),
        (b"\x00\x00\x00\x0cjP  ", "jpeg2000"),
    ):
        if head.startswith(magic):
            return fmt
    return "unknown"


def _is_aperio(tiff: _Tiff) -> bool:
    entry = tiff.ifds[0].get(270)
    return entry is not None and tiff.text(entry).startswith("Aperio")


def _scrub_description(text: str, removed: set[str]) -> str:
    """Keep technical header fragments and allow-listed ``key = value`` fields."""
    header, *fields = text.split("|")
    kept_header = []
    for piece in re.split(r"(\r?\n|;)", header):
        if piece in ("\n", "\r\n", ";") or any(p.fullmatch(piece) for p in _HEADER_FRAGMENTS):
            kept_header.append(piece)
        else:
            removed.add("aperio.<description header text>")
    new_header = "".join(kept_header)
    if not new_header.startswith("Aperio"):
        new_header = "Aperio Image Library " + new_header  # OpenSlide needs the prefix
    kept = [new_header]
    for field in fields:
        key, sep, _value = field.partition(" = ")
        key = key.strip()
        if sep and key in _KEPT_APERIO_FIELDS:
            kept.append(field)
        else:
            removed.add(f"aperio.{key}" if sep else "aperio.<unnamed field>")
    return "|".join(kept)


def is_deidentified_directory(description: str, tags: Iterable[int]) -> bool:
    """True if an Aperio directory holds only allow-listed tags and description fields."""
    if not description.startswith("Aperio") or any(t not in _KEPT_TAGS for t in tags):
        return False
    removed: set[str] = set()
    return _scrub_description(description, removed) == description and not removed


def _classify(tiff: _Tiff, index: int, ifd: _Ifd) -> str:
    """'level', 'thumbnail', or the name of an associated image to remove."""
    if ifd.get(322) is not None:
        return "level"
    if index == 1:
        return "thumbnail"
    entry = ifd.get(270)
    if entry is not None:
        lines = tiff.text(entry).splitlines()
        if len(lines) > 1:
            name = lines[1].split(" ", 1)[0]
            if name in ("label", "macro"):
                return name
    return f"image #{index}"


def _zero(dst: BinaryIO, ranges: Iterable[tuple[int, int]]) -> None:
    for offset, length in ranges:
        dst.seek(offset)
        while length > 0:
            step = min(length, 1 << 20)
            dst.write(b"\0" * step)
            length -= step


def deidentify_svs(
    src_path: str | PathLike[str], dst: BinaryIO, *, name: str | None = None
) -> SlideImportReport:
    """Write a de-identified copy of the Aperio SVS at ``src_path`` into ``dst``.

    ``dst`` must be writable and seekable (a file opened ``"w+b"`` or a BytesIO) and empty.
    ``name`` is the file's name as uploaded, used only to recognise formats (a ``.mrxs``
    or ``.vms`` is one part of a multi-file slide). Raises UnsupportedFormatError for
    anything but Aperio SVS and ValidationError for corrupt, truncated or absurd files.
    See the module documentation for what is kept.
    """
    with open(src_path, "rb") as fh:
        multi = _multi_file_format(fh.read(132), name)
    if multi is not None:
        raise UnsupportedFormatError(
            multi,
            f"a multi-file slide format ({_MULTI_FILE_PARTS[multi]}); one file of it "
            "holds no whole image and its other parts are missing. Only Aperio SVS (one "
            "file) can be imported: export the slide as SVS from the scanner software",
        )
    with open(src_path, "rb") as src:
        size = src.seek(0, 2)
        src.seek(0)
        head = src.read(4)
        if head[:2] not in (b"II", b"MM"):
            raise UnsupportedFormatError(
                detect_slide_format(src_path, name), "only Aperio SVS slides can be de-identified"
            )
        tiff = _Tiff(src, size)
        if not _is_aperio(tiff):
            raise UnsupportedFormatError(
                detect_slide_format(src_path, name),
                "only Aperio SVS (TIFF with an 'Aperio' ImageDescription) can be de-identified",
            )
        plan = _plan(tiff)
        src.seek(0)
        dst.seek(0)
        dst.truncate()
        shutil.copyfileobj(src, dst, 1 << 20)
        return _apply(tiff, plan, dst)


@dataclass(frozen=True, slots=True)
class _Plan:
    kept: tuple[tuple[int, _Ifd, str], ...]
    dropped: tuple[tuple[int, _Ifd, str], ...]
    width: int
    height: int


def _plan(tiff: _Tiff) -> _Plan:
    kept, dropped = [], []
    for index, ifd in enumerate(tiff.ifds):
        width, height = tiff.value(ifd, 256), tiff.value(ifd, 257)
        if not (0 < width <= MAX_SLIDE_SIDE and 0 < height <= MAX_SLIDE_SIDE):
            raise ValidationError("slide", f"image {index} has absurd dimensions")
        kind = "level" if index == 0 else _classify(tiff, index, ifd)
        if index == 0 and ifd.get(322) is None:
            raise ValidationError("slide", "Aperio level 0 is not tiled")
        if kind == "level":
            tw, th = tiff.value(ifd, 322), tiff.value(ifd, 323)
            if not (0 < tw <= _MAX_TILE_SIDE and 0 < th <= _MAX_TILE_SIDE):
                raise ValidationError("slide", f"image {index} has absurd tile dimensions")
            expected = -(-width // tw) * -(-height // th)
            if len(tiff.data_ranges(ifd)) != expected:
                raise ValidationError("slide", f"image {index} has a wrong number of tiles")
        else:
            tiff.data_ranges(ifd)
        (kept if kind in ("level", "thumbnail") else dropped).append((index, ifd, kind))
        if kind in ("level", "thumbnail"):
            for entry in ifd.entries:
                if entry.tag in _POINTER_TAGS:
                    raise UnsupportedFormatError(
                        "aperio",
                        f"image {index} holds sub-directories (tag {entry.tag}) "
                        "that cannot be de-identified",
                    )
    level0 = tiff.ifds[0]
    return _Plan(tuple(kept), tuple(dropped), tiff.value(level0, 256), tiff.value(level0, 257))


def _apply(tiff: _Tiff, plan: _Plan, dst: BinaryIO) -> SlideImportReport:
    bo, big = tiff.bo, tiff.big
    removed_fields: set[str] = set()
    mpp: float | None = None
    # 1. Drop associated images: zero their data, values and directories.
    for _index, ifd, _name in plan.dropped:
        _zero(dst, tiff.data_ranges(ifd))
        _zero(dst, [(e.value_offset, e.size) for e in ifd.entries if e.value_offset is not None])
        _zero(dst, [(ifd.offset, ifd.next_pointer_at + tiff.word - ifd.offset)])
    # 2. Rewrite kept directories in place, shorter, and chain them.
    entry_fmt = bo + ("HHQ" if big else "HHI")
    kept = plan.kept
    for pos, (_index, ifd, _kind) in enumerate(kept):
        entries = []
        for entry in ifd.entries:
            if entry.tag in _KEPT_TAGS:
                if entry.tag == 270:
                    old = tiff.text(entry)
                    new = _scrub_description(old, removed_fields)
                    if mpp is None:
                        match = re.search(r"\|MPP = ([0-9.]+)", new)
                        mpp = float(match.group(1)) if match else None
                    entry = _rewrite_text(dst, tiff, entry, new)
                entries.append(entry)
            else:
                removed_fields.add("tiff." + _TAG_NAMES.get(entry.tag, f"Tag{entry.tag}"))
                if entry.value_offset is not None:
                    _zero(dst, [(entry.value_offset, entry.size)])
        next_offset = kept[pos + 1][1].offset if pos + 1 < len(kept) else 0
        body = (
            struct.pack(bo + tiff.cnt_fmt, len(entries))
            + b"".join(struct.pack(entry_fmt, e.tag, e.type, e.count) + e.raw for e in entries)
            + struct.pack(bo + tiff.off_fmt, next_offset)
        )
        old_len = ifd.next_pointer_at + tiff.word - ifd.offset
        dst.seek(ifd.offset)
        dst.write(body + b"\0" * (old_len - len(body)))
    # The first IFD is always kept (level 0), so the header pointer is unchanged.
    dst.flush()
    levels = sum(1 for _i, _ifd, kind in kept if kind == "level")
    return SlideImportReport(
        source_format="aperio",
        width=plan.width,
        height=plan.height,
        levels=levels,
        kept_images=tuple(kind for _i, _ifd, kind in kept if kind != "level"),
        removed_images=tuple(name for _i, _ifd, name in plan.dropped),
        removed_fields=tuple(sorted(removed_fields)),
        microns_per_pixel=mpp,
    )


def _rewrite_text(dst: BinaryIO, tiff: _Tiff, entry: _Entry, text: str) -> _Entry:
    """Overwrite an ASCII value in place with ``text`` (not longer); zero the remainder."""
    data = text.encode("latin-1") + b"\0"
    if len(data) > entry.size:
        raise ValidationError("slide", "description grew while scrubbing")  # cannot happen
    if entry.value_offset is None:
        raw = data.ljust(tiff.word, b"\0")
        return _Entry(entry.tag, entry.type, len(data), raw, None)
    dst.seek(entry.value_offset)
    dst.write(data + b"\0" * (entry.size - len(data)))
    if len(data) <= tiff.word:  # now fits inline
        return _Entry(entry.tag, entry.type, len(data), data.ljust(tiff.word, b"\0"), None)
    return _Entry(entry.tag, entry.type, len(data), entry.raw, entry.value_offset)
