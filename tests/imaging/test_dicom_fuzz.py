"""Mutated files thrown at the importer for a bounded time: no crash, hang or memory blow-up.

Hypothesis mutates real DICOM files (bytes flipped, runs overwritten, cut, spliced, and
header fields such as Rows / Columns / NumberOfFrames / lengths set to absurd values)
and zip archives of them. Every input must end as a prepared instance, a held one, or a
:class:`ValidationError`; any other exception is a bug. Each example runs under a time
limit (hypothesis ``deadline``) and the whole run under a memory ceiling (``RLIMIT_AS``
in a child process would be stricter; here tracemalloc's peak is checked).
"""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import pydicom.data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpms_hub.domain.errors import ValidationError
from cpms_hub.imaging.deid import DeidKeys
from cpms_hub.imaging.dicom import DicomLimits
from cpms_hub.imaging.dicom_import import iter_items, prepare_instance

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
SEEDS = [
    (TEST_FILES / name).read_bytes()
    for name in (
        "CT_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "rtdose.dcm",
    )
]
KEYS = DeidKeys(b"\x05" * 32)
LIMITS = DicomLimits(max_file_bytes=4 * 1024**2, max_decoded_bytes=64 * 1024**2)
#: tags whose values decide sizes (Rows, Columns, NumberOfFrames, BitsAllocated...)
SIZE_TAGS = [b"\x28\x00\x10\x00", b"\x28\x00\x11\x00", b"\x28\x00\x08\x00", b"\x28\x00\x00\x01"]


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "run", "cut", "splice", "size", "length"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "run":
            data[at : at + 8] = draw(st.binary(min_size=8, max_size=8))
        elif kind == "cut":
            del data[at:]
            if not data:
                data = bytearray(b"\x00")
        elif kind == "splice":
            other = draw(st.sampled_from(SEEDS))
            data[at:] = other[draw(st.integers(0, len(other) - 1)) :]
        elif kind == "size":
            tag = draw(st.sampled_from(SIZE_TAGS))
            pos = data.find(tag)
            if pos >= 0:
                data[pos + 8 : pos + 10] = draw(st.binary(min_size=2, max_size=2))
        else:  # an element length made absurd
            pos = data.find(b"\xe0\x7f\x10\x00")
            if pos >= 0:
                data[pos + 8 : pos + 12] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


def _import(data: bytes) -> None:
    for item in iter_items(data, LIMITS):
        if item.data is None:
            continue
        try:
            prepare_instance(item.data, KEYS, confirmed={"*"}, limits=LIMITS)
        except ValidationError:
            pass


@settings(
    max_examples=150,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(mutated())
def test_mutated_files_never_crash(data: bytes) -> None:
    tracemalloc.start()
    try:
        _import(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 512 * 1024**2


@settings(max_examples=40, deadline=5000, derandomize=True)
@given(st.lists(mutated(), min_size=1, max_size=4), st.booleans())
def test_mutated_archives_never_crash(members: list[bytes], damage: bool) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for i, body in enumerate(members):
            z.writestr(f"{i}.dcm", body)
    data = bytearray(out.getvalue())
    if damage:
        data[len(data) // 2] ^= 0xFF
    _import(bytes(data))
