"""De-identification of DICOM instances by PS3.15 Annex E, driven by the standard's table.

The rules are *data*: Table E.1-1 of DICOM PS3.15 (edition 2024b), shipped next to this
module as ``ps3.15-e1-1-basic-profile.tsv`` (tag, keyword, Basic Profile action) and
``ps3.15-e1-1-with-options.tsv`` (the same rows with the option columns). Nothing is a
hand-picked list of tags: every attribute the table names gets the table's action, and a
test checks the shipped files equal the reference copies.

Profile and options applied (PS3.15 E.1, E.3):

* **Basic Application Level Confidentiality Profile** (code 113100), with private
  attributes removed (the table's ``(gggg,eeee)`` row; Retain Safe Private is *not* used).
* **Retain Longitudinal Temporal Information with Modified Dates** (113107): every
  attribute whose option column says ``C`` is kept with its dates moved by one whole
  number of days, the same for every instance of one patient in one case (see
  :class:`DeidKeys`). Dates (DA) and the date part of date-times (DT) move; times (TM)
  stay, since a whole-day shift leaves the time of day unchanged. A date that does not
  parse is removed rather than kept.
* **Retain Patient Characteristics** (113108): ``K`` in its column keeps sex, age, size,
  weight, ethnic group, smoking and pregnancy status. Its ``C`` rows (allergies, special
  needs, patient state, pre-medication) are free text that cannot be cleaned reliably, so
  they keep the Basic Profile action (removed).

Action codes (Table E.1-1a) as carried out here:

* ``X`` remove; ``Z`` zero-length value (an empty sequence for SQ); ``D`` a dummy value
  of the element's VR (``ANONYMIZED``, ``19000101``, ``0``...; for SQ the items are kept
  and de-identified); ``K`` keep (sequences de-identified inside); ``U`` a new UID;
* the combined codes choose by the IOD's type of the attribute, which the table does not
  carry. CPMS does not keep IOD tables, so it takes the choice that keeps the least:
  ``X/Z``, ``X/D`` and ``X/Z/D`` remove, ``Z/D`` empties. ``X/Z/U*`` (Referenced Image,
  Source Image sequences) keeps the sequence with its UIDs replaced, so references
  between de-identified instances still line up.

Elements the table does not name (pixel module, geometry, acquisition parameters) are
kept; sequences are always walked recursively, whatever their action, so a patient name
nested in any item is found. UIDs are replaced by ``2.25.<n>`` UIDs derived with HMAC
from a per-case key: the same original UID always yields the same new UID within a case
(series, frames of reference and references line up, re-imports are idempotent), and
different cases get unrelated UIDs. Afterwards ``PatientIdentityRemoved`` is ``YES``,
``DeidentificationMethod`` names the profile and options, the method code sequence lists
the three codes, and ``LongitudinalTemporalInformationModified`` is ``MODIFIED``.

:func:`burned_in_risk` says whether an instance must be held back before import: it
declares burned-in annotation (``BurnedInAnnotation`` ``YES``), or it is an ultrasound or
secondary capture image that does not explicitly say ``NO``.

The report (:class:`DeidReport`) lists keywords only (private attributes by group),
never values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

__all__ = [
    "DEIDENTIFICATION_METHOD",
    "METHOD_CODES",
    "PROFILE_FILE",
    "OPTIONS_FILE",
    "DeidKeys",
    "DeidReport",
    "ProfileRule",
    "burned_in_risk",
    "deidentify",
    "effective_action",
    "profile_rules",
]

_ROW = re.compile(r"^\([0-9A-Fa-fxg]{4},[0-9A-Fa-fxe]{4}\)\t")
PROFILE_FILE = Path(__file__).with_name("ps3.15-e1-1-basic-profile.tsv")
OPTIONS_FILE = Path(__file__).with_name("ps3.15-e1-1-with-options.tsv")

#: PS3.16 CID 7050 codes of what was applied
METHOD_CODES: tuple[tuple[str, str], ...] = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)
#: values of DeidentificationMethod (LO: each at most 64 characters)
DEIDENTIFICATION_METHOD: tuple[str, ...] = (
    "CPMS PS3.15 E.1-1 Basic Application Confidentiality Profile",
    "Retain Longitudinal Temporal Information Modified Dates",
    "Retain Patient Characteristics",
)

#: dummy values (action D) by VR; VRs not listed get a zero-length value instead
_DUMMY: dict[str, object] = {
    "AE": "ANONYMIZED",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "TM": "000000",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "UL": 0,
    "US": 0,
}
_TEXT_VRS = frozenset(
    {
        "AE",
        "AS",
        "CS",
        "DA",
        "DS",
        "DT",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "ST",
        "TM",
        "UC",
        "UI",
        "UR",
        "UT",
    }
)
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_ULTRASOUND_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.6.1",  # US Image
    "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume
    "1.2.840.10008.5.1.4.1.1.3.1",  # US Multi-frame Image
)
#: largest date shift in days (the shift is between 1 and this many days back)
MAX_SHIFT_DAYS = 3 * 365


@dataclass(frozen=True, slots=True)
class ProfileRule:
    """One row of Table E.1-1: the Basic Profile action and the two options' columns."""

    tag: str
    keyword: str
    action: str
    patient_characteristics: str = ""
    modified_dates: str = ""


def _read_tsv(path: Path) -> list[list[str]]:
    """Rows of a table file; a cell with a line break (one attribute name) is joined back."""
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        if _ROW.match(line) or line.startswith("tag\t"):
            lines.append(line)
        elif lines:
            lines[-1] += " " + line
    return [(line.split("\t") + [""] * 15)[:15] for line in lines[1:] if line.strip()]


@cache
def profile_rules() -> dict[str, ProfileRule]:
    """Table E.1-1 keyed by its tag text (``"(0010,0010)"``, ``"(60xx,3000)"``...)."""
    options = {r[0]: r for r in _read_tsv(OPTIONS_FILE)}
    rules = {}
    for tag, keyword, action, *_ in _read_tsv(PROFILE_FILE):
        opt = options.get(tag)
        if opt is not None and (opt[1], opt[2]) != (keyword, action):
            raise RuntimeError(f"profile tables disagree on {tag}")
        rules[tag] = ProfileRule(
            tag,
            keyword,
            action,
            patient_characteristics=opt[9] if opt else "",
            modified_dates=opt[11] if opt else "",
        )
    return rules


@cache
def _by_tag() -> dict[int, ProfileRule]:
    out = {}
    for text, rule in profile_rules().items():
        if "x" in text.lower()[1:5] or "x" in text.lower()[6:10] or "g" in text:
            continue  # repeating groups and the private row: matched by _rule_for
        out[int(text[1:5] + text[6:10], 16)] = rule
    return out


def _rule_for(tag: BaseTag) -> ProfileRule | None:
    rules = profile_rules()
    if tag.is_private:
        return rules["(gggg,eeee)"]
    group = tag.group
    if 0x5000 <= group <= 0x50FF and group % 2 == 0:
        return rules["(50xx,xxxx)"]
    if 0x6000 <= group <= 0x60FF and group % 2 == 0:
        if tag.element == 0x3000:
            return rules["(60xx,3000)"]
        if tag.element == 0x4000:
            return rules["(60xx,4000)"]
    return _by_tag().get(int(tag))


def effective_action(rule: ProfileRule) -> str:
    """What CPMS does for a row, with both options applied (see the module text).

    One of ``X``, ``Z``, ``D``, ``K``, ``U``, ``U*`` (keep a sequence, replace the UIDs in
    it) or ``SHIFT`` (dates moved by the patient's shift).
    """
    if rule.patient_characteristics == "K":
        return "K"
    if rule.modified_dates == "C":
        return "SHIFT"
    action = rule.action
    if action in ("X/Z", "X/D", "X/Z/D"):
        return "X"
    if action == "Z/D":
        return "Z"
    if action == "X/Z/U*":
        return "U*"
    if action == "C":  # not in the 2024b Basic column; cleaning free text is not possible
        return "X"
    return action


@dataclass(frozen=True, slots=True)
class DeidKeys:
    """Per-case secrets: where new UIDs and date shifts come from.

    ``secret`` (32 bytes, derived by the store from the case's data key) never leaves the
    service; UIDs and shifts are HMAC-SHA256 outputs under it, so they repeat within a
    case and reveal nothing about the originals.
    """

    secret: bytes

    def _mac(self, label: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{label}\x00{value}".encode(), hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """The case's replacement for UID ``original``: ``2.25.`` + a version-8 UUID."""
        raw = bytearray(self._mac("uid", original.strip().rstrip("\x00"))[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80  # RFC 9562 version 8 (custom)
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
        return f"2.25.{int.from_bytes(raw, 'big')}"

    def shift_days(self, patient_id: str) -> int:
        """Whole days to add to this patient's dates (negative: between 1 and 3 years back)."""
        n = int.from_bytes(self._mac("date-shift", patient_id.strip())[:8], "big")
        return -(1 + n % MAX_SHIFT_DAYS)

    def instance_key(self, original_sop_uid: str) -> str:
        """A short opaque key naming an instance in import reports (not the UID itself)."""
        return "i-" + self._mac("instance-key", original_sop_uid.strip()).hex()[:16]


@dataclass
class DeidReport:
    """What de-identification did to one instance: attribute keywords, never values."""

    removed: set[str] = field(default_factory=set)
    emptied: set[str] = field(default_factory=set)
    dummied: set[str] = field(default_factory=set)
    uids_replaced: set[str] = field(default_factory=set)
    dates_shifted: set[str] = field(default_factory=set)
    shift_days: int = 0

    def as_json(self) -> dict:
        return {
            "removed": sorted(self.removed),
            "emptied": sorted(self.emptied),
            "dummied": sorted(self.dummied),
            "uids_replaced": sorted(self.uids_replaced),
            "dates_shifted": sorted(self.dates_shifted),
        }


def _name(tag: BaseTag) -> str:
    if tag.is_private:
        return f"Private({tag.group:04X})"
    return keyword_for_tag(tag) or f"({tag.group:04X},{tag.element:04X})"


def _shift_date(text: str, days: int) -> str | None:
    text = text.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        day = dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        return (day + dt.timedelta(days=days)).strftime("%Y%m%d")
    except (ValueError, OverflowError):
        return None


def _shift_value(vr: str, value: object, days: int) -> object | None:
    """The shifted value, or None when it cannot be shifted (then the element goes)."""
    values = list(value) if isinstance(value, list | tuple) or _is_multi(value) else [value]
    out = []
    for v in values:
        text = str(v) if v is not None else ""
        if not text:
            out.append(text)
            continue
        if vr == "TM":
            out.append(text)  # whole-day shift: the time of day stays
        elif vr == "DA":
            shifted = _shift_date(text, days)
            if shifted is None:
                return None
            out.append(shifted)
        elif vr == "DT":
            shifted = _shift_date(text[:8], days) if len(text) >= 8 else None
            if shifted is None:
                return None
            out.append(shifted + text[8:])
        else:
            return None
    return out if len(out) != 1 else out[0]


def _is_multi(value: object) -> bool:
    return type(value).__name__ == "MultiValue"


def _replace_uids(value: object, keys: DeidKeys) -> object:
    if _is_multi(value) or isinstance(value, list | tuple):
        return [keys.uid(str(v)) if v else v for v in value]  # type: ignore[union-attr]
    return keys.uid(str(value)) if value else value


def _walk(ds: Dataset, keys: DeidKeys, days: int, report: DeidReport) -> None:
    for tag in list(ds.keys()):
        elem = ds[tag]
        name = _name(tag)
        if tag.is_private or tag.element == 0:
            # private attributes (creators included) go; so do group lengths (retired, and
            # wrong once elements have been removed)
            del ds[tag]
            report.removed.add(name)
            continue
        rule = _rule_for(tag)
        action = "K" if rule is None else effective_action(rule)
        vr = elem.VR
        if action == "X":
            del ds[tag]
            report.removed.add(name)
            continue
        if action == "Z":
            # zero length: an empty sequence, an empty string, or no value for binary VRs
            elem.value = Sequence() if vr == "SQ" else ("" if vr in _TEXT_VRS else None)
            report.emptied.add(name)
            continue
        if action == "D" and vr != "SQ":
            elem.value = _DUMMY.get(vr)
            report.dummied.add(name)
            continue
        if action == "U" and vr == "UI":
            elem.value = _replace_uids(elem.value, keys)
            report.uids_replaced.add(name)
            continue
        if action == "SHIFT":
            if elem.value in (None, "") or vr not in ("DA", "DT", "TM"):
                if vr not in ("DA", "DT", "TM") and elem.value not in (None, ""):
                    del ds[tag]  # a "date" of another VR cannot be moved safely
                    report.removed.add(name)
                continue
            shifted = _shift_value(vr, elem.value, days)
            if shifted is None:
                del ds[tag]
                report.removed.add(name)
            else:
                elem.value = shifted
                if vr != "TM":
                    report.dates_shifted.add(name)
            continue
        if vr == "SQ":
            # K, D, U* and unlisted sequences: every item de-identified the same way
            for item in elem.value or ():
                _walk(item, keys, days, report)
            if action == "D":
                report.dummied.add(name)
            continue
        # K, or an element the table does not name: kept


def burned_in_risk(ds: Dataset) -> str | None:
    """Why ``ds`` must be held back for burned-in text, or None if it need not be."""
    declared = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if declared == "YES":
        return "declares burned-in annotation (BurnedInAnnotation YES)"
    if declared == "NO":
        return None
    sop_class = str(ds.get("SOPClassUID", "") or "")
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality == "US" or sop_class in _ULTRASOUND_CLASSES:
        return "ultrasound image without BurnedInAnnotation NO: may carry burned-in text"
    if sop_class.startswith(_SECONDARY_CAPTURE):
        return "secondary capture without BurnedInAnnotation NO: may carry burned-in text"
    return None


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def deidentify(ds: Dataset, keys: DeidKeys, *, extra_methods: Iterable[str] = ()) -> DeidReport:
    """De-identify ``ds`` in place (file meta included); returns what was done.

    The patient's date shift is keyed by the *original* PatientID (empty if absent), so
    every instance of one patient in one case moves by the same number of days.
    """
    days = keys.shift_days(str(ds.get("PatientID", "") or ""))
    report = DeidReport(shift_days=days)
    _walk(ds, keys, days, report)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [m[:64] for m in (*DEIDENTIFICATION_METHOD, *extra_methods)]
    ds.DeidentificationMethodCodeSequence = Sequence([_code_item(*c) for c in METHOD_CODES])
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        # the file meta travels with the file: only what a reader needs stays in it
        for tag in list(meta.keys()):
            if int(tag) not in (0x00020001, 0x00020002, 0x00020003, 0x00020010):
                del meta[tag]
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return report
