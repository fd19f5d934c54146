"""PS3.15 E.1-1 de-identification, checked attribute by attribute against the table.

The expectations are computed here from the reference TSV (``../shared/reference``, or the
copy shipped in the package when the reference is not beside the checkout), independently
of :mod:`cpms_hub.imaging.deid`, on every pydicom test file that reads, walking sequences
recursively.
"""

from __future__ import annotations

import copy
import datetime as dt
import warnings
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from cpms_hub.imaging import deid
from cpms_hub.imaging.deid import DeidKeys, burned_in_risk, deidentify
from tests.data_gen import ct_slice

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "reference"
TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
KEYS = DeidKeys(b"\x01" * 32)


def _table(name: str) -> list[list[str]]:
    path = REFERENCE / name if (REFERENCE / name).exists() else deid.PROFILE_FILE.with_name(name)
    rows: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("(") and "\t" in line[:13]:
            rows.append(line)
        elif rows and line and not line.startswith("#"):
            rows[-1] += " " + line  # an attribute name with a line break in it
    return [(r.split("\t") + [""] * 15)[:15] for r in rows]


@pytest.mark.parametrize("name", [deid.PROFILE_FILE.name, deid.OPTIONS_FILE.name])
def test_shipped_table_equals_the_reference(name: str) -> None:
    if not (REFERENCE / name).exists():
        pytest.skip("the reference copy is not beside the checkout")
    assert (deid.PROFILE_FILE.with_name(name)).read_bytes() == (REFERENCE / name).read_bytes()


def test_every_row_of_the_table_is_a_rule() -> None:
    rows = _table("ps3.15-e1-1-basic-profile.tsv")
    assert len(rows) == 621
    rules = deid.profile_rules()
    assert {r[0] for r in rows} == set(rules)
    for tag, keyword, action, *_ in rows:
        assert (rules[tag].keyword, rules[tag].action) == (keyword, action)


def _expected_actions() -> dict[int, str]:
    """Tag -> what must happen, from the reference table and the two options."""
    out = {}
    for row in _table("ps3.15-e1-1-with-options.tsv"):
        tag, action, characteristics, dates = row[0], row[2], row[9], row[11]
        if "x" in tag.lower()[1:10] or "g" in tag:
            continue
        if characteristics == "K":
            want = "K"
        elif dates == "C":
            want = "SHIFT"
        elif action in ("X/Z", "X/D", "X/Z/D", "X"):
            want = "X"
        elif action in ("Z", "Z/D"):
            want = "Z"
        elif action == "X/Z/U*":
            want = "K"  # kept; the items inside are checked element by element
        else:
            want = action
        out[int(tag[1:5] + tag[6:10], 16)] = want
    return out


EXPECTED = _expected_actions()
SHIFT = None  # set per dataset: the patient's shift


def _shifted(value: str, days: int) -> str:
    d = dt.date(int(value[:4]), int(value[4:6]), int(value[6:8])) + dt.timedelta(days=days)
    return d.strftime("%Y%m%d") + value[8:]


def _check(orig: Dataset, out: Dataset, days: int, path: str = "") -> int:
    """Assert every element of ``orig`` was treated as the table says; count checks."""
    checked = 0
    for elem in orig:
        tag = elem.tag
        where = f"{path}{elem.keyword or tag}"
        if tag.is_private or (0x5000 <= tag.group <= 0x50FF and tag.group % 2 == 0):
            assert tag not in out, where
            checked += 1
            continue
        if 0x6000 <= tag.group <= 0x60FF and tag.element in (0x3000, 0x4000):
            assert tag not in out, where
            checked += 1
            continue
        if tag.element == 0:
            assert tag not in out, where  # group lengths are retired: removed
            continue
        want = EXPECTED.get(int(tag), "K")
        if tag in (0x00120062, 0x00120063, 0x00120064, 0x00280303):
            continue  # written by de-identification itself
        checked += 1
        if want == "X":
            assert tag not in out, where
        elif want == "Z":
            assert tag in out, where
            value = out[tag].value
            assert value in (None, "", b"") or (isinstance(value, Sequence) and len(value) == 0), (
                where
            )
        elif want == "D":
            assert tag in out, where
            if elem.VR != "SQ":
                assert out[tag].value != elem.value or elem.value in (None, ""), where
        elif want == "U":
            if elem.VR == "UI" and elem.value:
                values = elem.value if elem.VM > 1 else [elem.value]
                new = out[tag].value if out[tag].VM > 1 else [out[tag].value]
                assert list(new) == [KEYS.uid(str(v)) for v in values], where
        elif want == "SHIFT":
            if elem.VR in ("DA", "DT") and elem.value:
                text = str(elem.value)
                if len(text) >= 8 and text[:8].isdigit():
                    try:
                        expect = _shifted(text, days)
                    except ValueError:
                        assert tag not in out, where
                        continue
                    assert str(out[tag].value) == expect, where
                else:
                    assert tag not in out, where
            elif elem.VR == "TM":
                assert out[tag].value == elem.value, where
        else:  # K and attributes the table does not name
            assert tag in out, where
            if elem.VR == "SQ":
                assert len(out[tag].value) == len(elem.value), where
                for i, (a, b) in enumerate(zip(elem.value, out[tag].value, strict=True)):
                    checked += _check(a, b, days, f"{where}[{i}].")
            elif tag != 0x7FE00010:
                assert out[tag].value == elem.value, where
        if want == "D" and elem.VR == "SQ":
            for i, (a, b) in enumerate(zip(elem.value, out[tag].value, strict=True)):
                checked += _check(a, b, days, f"{where}[{i}].")
    return checked


def _readable() -> list[Path]:
    out = []
    for p in sorted(TEST_FILES.rglob("*")):
        if not p.is_file() or p.suffix in (".py", ".json", ".txt", ".gz", ".bz2", ".icc", ".dump"):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(p, force=False)
                list(ds.iterall())  # every value decodes
        except Exception:  # noqa: S112 - files that do not read are covered by test_dicom_read
            continue
        out.append(p)
    return out


READABLE = _readable()


def test_most_bundled_files_read() -> None:
    assert len(READABLE) > 60


@pytest.mark.parametrize("path", READABLE, ids=lambda p: str(p.relative_to(TEST_FILES)))
def test_profile_attribute_by_attribute(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        orig = pydicom.dcmread(path)
        out = copy.deepcopy(orig)
        report = deidentify(out, KEYS)
    days = KEYS.shift_days(str(orig.get("PatientID", "") or ""))
    assert report.shift_days == days and -3 * 365 <= days <= -1
    assert _check(orig, out, days) > 0
    assert out.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107", "113108"]
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert not any(elem.tag.is_private for elem in out.iterall())
    # the report names attributes, never values
    names = " ".join(report.removed | report.emptied | report.dummied)
    if orig.get("PatientName"):
        assert str(orig.PatientName) not in names


def _series(n: int, seed: int = 0) -> list[Dataset]:
    study, series, frame = (pydicom.uid.generate_uid() for _ in range(3))
    return [
        ct_slice(
            i,
            slices=n,
            size=16,
            study_uid=study,
            series_uid=series,
            seed=seed,
            frame_of_reference_uid=frame,
        )
        for i in range(n)
    ]


def test_uids_consistent_across_a_series_and_references_line_up() -> None:
    slices = _series(5)
    ref = Dataset()
    ref.ReferencedSOPClassUID = slices[0].SOPClassUID
    ref.ReferencedSOPInstanceUID = slices[0].SOPInstanceUID
    slices[1].ReferencedImageSequence = Sequence([ref])
    outs = [copy.deepcopy(s) for s in slices]
    for ds in outs:
        deidentify(ds, KEYS)
    assert len({d.SeriesInstanceUID for d in outs}) == 1
    assert len({d.StudyInstanceUID for d in outs}) == 1
    assert len({d.FrameOfReferenceUID for d in outs}) == 1
    assert len({d.SOPInstanceUID for d in outs}) == 5
    assert outs[0].SeriesInstanceUID != slices[0].SeriesInstanceUID
    assert outs[1].ReferencedImageSequence[0].ReferencedSOPInstanceUID == outs[0].SOPInstanceUID
    assert all(d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID for d in outs)
    # the same instance imported again gets the same UIDs; another case gets others
    again = copy.deepcopy(slices[0])
    deidentify(again, KEYS)
    assert again.SOPInstanceUID == outs[0].SOPInstanceUID
    other = copy.deepcopy(slices[0])
    deidentify(other, DeidKeys(b"\x02" * 32))
    assert other.SOPInstanceUID != outs[0].SOPInstanceUID
    assert all(len(d.SOPInstanceUID) <= 64 and d.SOPInstanceUID.startswith("2.25.") for d in outs)


def test_one_date_shift_per_patient() -> None:
    a, b = _series(2, seed=1), _series(2, seed=2)
    for ds in a + b:
        deidentify(ds, KEYS)
    assert a[0].StudyDate == a[1].StudyDate  # same patient, same shift
    # intervals kept within a patient: content date minus study date unchanged
    assert a[0].ContentDate == a[0].StudyDate
    assert KEYS.shift_days("SYN-000001") != KEYS.shift_days("SYN-000002")
    assert a[0].PatientSex == "O"  # Retain Patient Characteristics
    assert "PatientBirthDate" in a[0] and not a[0].PatientBirthDate
    assert "InstitutionName" not in a[0] and not a[0].PatientName


@pytest.mark.parametrize(
    ("modality", "sop_class", "declared", "held"),
    [
        ("CT", "1.2.840.10008.5.1.4.1.1.2", None, False),
        ("CT", "1.2.840.10008.5.1.4.1.1.2", "YES", True),
        ("US", "1.2.840.10008.5.1.4.1.1.6.1", None, True),
        ("US", "1.2.840.10008.5.1.4.1.1.6.1", "NO", False),
        ("OT", "1.2.840.10008.5.1.4.1.1.7", None, True),
        ("OT", "1.2.840.10008.5.1.4.1.1.7.4", "", True),
        ("OT", "1.2.840.10008.5.1.4.1.1.7", "NO", False),
        ("MR", "1.2.840.10008.5.1.4.1.1.4", "YES", True),
    ],
)
def test_burned_in_risk(modality: str, sop_class: str, declared: str | None, held: bool) -> None:
    ds = Dataset()
    ds.Modality = modality
    ds.SOPClassUID = sop_class
    if declared is not None:
        ds.BurnedInAnnotation = declared
    assert (burned_in_risk(ds) is not None) is held
