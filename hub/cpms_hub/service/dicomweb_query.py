"""QIDO-RS query parameters (DICOM PS3.18 8.3.4, matching by PS3.4 C.2.2.2) over DICOM JSON.

A search builds, for each study, series or instance, the DICOM JSON attributes it can
offer (from the de-identified header of a representative instance, plus the counts and
the retrieve URL), then :class:`Query` decides which of them match and which attributes
the answer carries. This module knows nothing of the store or of HTTP.

Matching keys are attribute keywords (``StudyDate``) or tags (``00080020``):

* ``UI``: UID list matching - one UID or several separated by ``,`` or ``\\``.
* ``DA``, ``TM``, ``DT``: a single value or a range: ``20200101-20201231``, ``20200101-``
  (from), ``-20201231`` (until); ``DA`` values are 8 digits (``YYYYMMDD``); ``DT`` ranges
  without a UTC offset.
* text VRs (``AE CS LO LT PN SH ST UC UR UT``): single value matching, with wildcard
  matching when the value holds ``*`` (any run of characters) or ``?`` (one character);
  case-sensitive. A multi-valued attribute matches when one of its values does.
* numbers (``IS DS US SS UL SL UV SV FL FD``): equal as numbers.
* an empty value (``Modality=``) is universal matching: everything matches, and the
  attribute is returned.

An entity whose attribute is absent or empty does not match a non-empty key. This
matters here: de-identification empties or removes names, IDs and accession numbers, so a
search by ``PatientName=SMITH*`` finds nothing, as it should.

``fuzzymatching=true`` is accepted (PS3.18 8.3.4.5): it applies to person names (``PN``)
only, which then match case-insensitively, and a value without wildcards matches names
that start with it. Since de-identification empties person names, it rarely finds more.

``includefield`` (repeated or comma-separated keywords or tags, or ``all``) adds
attributes to the defaults of PS3.18 Tables 6.7.1-2 to 6.7.1-2b; ``all`` returns every
attribute available at the level. ``limit`` and ``offset`` page the answer. Sequence
matching (``a.b`` keys) is not supported and refused with 400, as is an unknown keyword.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from pydicom.datadict import dictionary_VR, tag_for_keyword

from cpms_hub.domain import ValidationError

__all__ = [
    "INSTANCE_DEFAULTS",
    "LEVEL_ALL",
    "SERIES_DEFAULTS",
    "STUDY_DEFAULTS",
    "Query",
    "parse_query",
    "tag_of",
]

#: query parameters that are not matching keys
_RESERVED = {"limit", "offset", "fuzzymatching", "includefield"}
_TEXT_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT", "AS"}
_NUMBER_VRS = {"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"}
_RANGE_VRS = {"DA", "TM", "DT"}
_MAX_LIMIT = 10_000


def _tags(*keywords: str) -> frozenset[str]:
    return frozenset(f"{tag_for_keyword(k):08X}" for k in keywords)


#: PS3.18 Table 6.7.1-2: what a study search returns by default
STUDY_DEFAULTS = _tags(
    "SpecificCharacterSet",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "InstanceAvailability",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "TimezoneOffsetFromUTC",
    "RetrieveURL",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDescription",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
#: PS3.18 Table 6.7.1-2a: series
SERIES_DEFAULTS = _tags(
    "SpecificCharacterSet",
    "Modality",
    "TimezoneOffsetFromUTC",
    "SeriesDescription",
    "RetrieveURL",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "NumberOfSeriesRelatedInstances",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
)
#: PS3.18 Table 6.7.1-2b: instances
INSTANCE_DEFAULTS = _tags(
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceAvailability",
    "TimezoneOffsetFromUTC",
    "RetrieveURL",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "InstanceNumber",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
)

#: what ``includefield=all`` may return per level: the Patient, General Study and Patient
#: Study modules for a study; General Series, Frame of Reference and General Equipment for
#: a series (each with the level's defaults); every attribute of the header for an instance
_STUDY_MODULES = _tags(
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy",
    "ProcedureCodeSequence",
    "ReferencedStudySequence",
    "AdmittingDiagnosesDescription",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "Occupation",
    "AdditionalPatientHistory",
    # Patient module, De-identification: says what was done to the data set
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
)
_SERIES_MODULES = _tags(
    "Modality",
    "SeriesInstanceUID",
    "SeriesNumber",
    "Laterality",
    "SeriesDate",
    "SeriesTime",
    "PerformingPhysicianName",
    "ProtocolName",
    "SeriesDescription",
    "OperatorsName",
    "BodyPartExamined",
    "PatientPosition",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "Manufacturer",
    "InstitutionName",
    "StationName",
    "ManufacturerModelName",
    "SoftwareVersions",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepID",
    "PerformedProcedureStepDescription",
)


def _study_all(tag: str) -> bool:
    return tag.startswith("0010") or tag in _STUDY_MODULES or tag in STUDY_DEFAULTS


def _series_all(tag: str) -> bool:
    return tag in _SERIES_MODULES or tag in SERIES_DEFAULTS


#: level -> (defaults, which attributes ``all`` returns)
LEVEL_ALL = {
    "study": (STUDY_DEFAULTS, _study_all),
    "series": (SERIES_DEFAULTS, _series_all),
    "instance": (INSTANCE_DEFAULTS, lambda _tag: True),
}


def tag_of(name: str, param: str) -> str:
    """The 8-hex-digit tag of a keyword or tag; ValidationError naming ``param`` otherwise."""
    if "." in name:
        raise ValidationError(param, "sequence matching (a.b) is not supported")
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        return name.upper()
    number = tag_for_keyword(name)
    if number is None:
        raise ValidationError(param, f"{name[:64]!r} is not a DICOM attribute keyword or tag")
    return f"{number:08X}"


def _vr(tag: str) -> str:
    try:
        return dictionary_VR(int(tag, 16))
    except KeyError:
        return "UN"


def _values(attr: Mapping | None) -> list:
    """The values of a DICOM JSON attribute as plain strings or numbers (PN: Alphabetic)."""
    if not attr:
        return []
    out = []
    for v in attr.get("Value", []):
        if isinstance(v, dict):
            v = v.get("Alphabetic", "")
        if v not in (None, ""):
            out.append(v)
    return out


def _wildcard(pattern: str, *, fold: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if fold else 0))


def _date_key(value: str, vr: str, param: str) -> str:
    """A value comparable as a string: DA must be YYYYMMDD; TM and DT lose separators."""
    v = value.strip().replace(":", "") if vr == "TM" else value.strip()
    if vr == "DA" and not re.fullmatch(r"\d{8}", v):
        raise ValidationError(param, "dates are YYYYMMDD, or a range YYYYMMDD-YYYYMMDD")
    if vr in ("TM", "DT") and not re.fullmatch(r"\d+(\.\d+)?([+-]\d{4})?", v):
        raise ValidationError(param, f"is not a {vr} value or range")
    return v


@dataclass(frozen=True)
class _Key:
    tag: str
    vr: str
    text: str
    param: str
    fuzzy: bool

    def matches(self, attr: Mapping | None) -> bool:
        if self.text == "":
            return True  # universal matching
        values = _values(attr)
        if not values:
            return False
        return any(self._one(v) for v in values)

    def _one(self, value: object) -> bool:
        if self.vr == "UI":
            return str(value) in set(re.split(r"[,\\]", self.text))
        if self.vr in _RANGE_VRS:
            return self._in_range(str(value))
        if self.vr in _NUMBER_VRS:
            try:
                return Decimal(str(value)) == Decimal(self.text)
            except InvalidOperation:
                return False
        text, value = self.text, str(value)
        fold = self.fuzzy and self.vr == "PN"
        if "*" in text or "?" in text:
            return bool(_wildcard(text, fold=fold).fullmatch(value))
        if fold:
            return value.lower().startswith(text.lower())
        return value == text

    def _in_range(self, value: str) -> bool:
        low, dash, high = self.text.partition("-")
        v = value.replace(":", "") if self.vr == "TM" else value
        if not dash:
            return self._cmp(v, low) == 0
        if low and self._cmp(v, low) < 0:
            return False
        return not (high and self._cmp(v, high) > 0)

    def _cmp(self, value: str, bound: str) -> int:
        if self.vr == "TM":  # 1230 is 12:30:00: compare at the same precision
            width = max(len(value.split(".")[0]), len(bound.split(".")[0]))
            value, bound = value.ljust(width, "0"), bound.ljust(width, "0")
        elif self.vr == "DT":
            value, bound = value[: len(bound)], bound
        return (value > bound) - (value < bound)


@dataclass(frozen=True)
class Query:
    """Matching keys, returned attributes, paging: parsed from one QIDO-RS request."""

    keys: tuple[_Key, ...] = ()
    include: frozenset[str] = frozenset()
    include_all: bool = False
    fuzzy: bool = False
    limit: int = 0
    offset: int = 0

    def matches(self, entity: Mapping[str, Mapping]) -> bool:
        return all(k.matches(entity.get(k.tag)) for k in self.keys)

    def project(self, entity: Mapping[str, Mapping], level: str) -> dict:
        """The attributes the answer carries: defaults, matching keys and ``includefield``."""
        defaults, in_all = LEVEL_ALL[level]
        wanted = set(defaults) | {k.tag for k in self.keys} | set(self.include)
        return {
            tag: attr
            for tag, attr in sorted(entity.items())
            if tag in wanted or (self.include_all and in_all(tag))
        }

    def page(self, items: list) -> tuple[list, bool]:
        """This page of ``items``, and whether more remain past it."""
        rest = items[self.offset :]
        if self.limit and len(rest) > self.limit:
            return rest[: self.limit], True
        return rest, False


def _int(params: Mapping[str, list[str]], name: str) -> int:
    values = params.get(name, [])
    if not values:
        return 0
    if len(values) > 1 or not values[0].isdigit():
        raise ValidationError(name, "is one whole number, 0 or more")
    return int(values[0])


def parse_query(params: Iterable[tuple[str, str]]) -> Query:
    """A :class:`Query` from the request's query parameters (repeats kept for includefield)."""
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    fuzzy_values = grouped.get("fuzzymatching", [])
    if fuzzy_values and fuzzy_values[-1].lower() not in ("true", "false"):
        raise ValidationError("fuzzymatching", "is true or false")
    fuzzy = bool(fuzzy_values) and fuzzy_values[-1].lower() == "true"
    limit, offset = _int(grouped, "limit"), _int(grouped, "offset")
    if limit > _MAX_LIMIT:
        raise ValidationError("limit", f"at most {_MAX_LIMIT}")
    include: set[str] = set()
    include_all = False
    for value in grouped.get("includefield", []):
        for name in filter(None, (v.strip() for v in value.split(","))):
            if name == "all":
                include_all = True
            else:
                include.add(tag_of(name, "includefield"))
    keys = []
    for name, values in grouped.items():
        if name in _RESERVED:
            continue
        if len(values) > 1:
            raise ValidationError(name[:64], "is given more than once")
        tag = tag_of(name, name[:64])
        vr = _vr(tag)
        text = values[0]
        if vr == "SQ":
            raise ValidationError(name[:64], "sequence matching is not supported")
        if vr in _RANGE_VRS and text:
            for bound in text.split("-", 1):
                if bound:
                    _date_key(bound, vr, name[:64])
        keys.append(_Key(tag, vr, text, name[:64], fuzzy))
    return Query(tuple(keys), frozenset(include), include_all, fuzzy, limit, offset)
