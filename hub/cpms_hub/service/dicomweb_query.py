"""QIDO-RS query parameters (DICOM PS3.18 8.3.4, matching by PS3.4 C.2.2.2) over DICOM JSON.

A search builds, for each study, series or instance, the DICOM JSON attributes it can
offer (from the de-identified header of a representative instance, plus the counts and
the retrieve URL; a series carries its study's attributes and an instance those of its
series and study), then :class:`Query` decides which of them match and which attributes
the answer carries. This module knows nothing of the store or of HTTP.

Matching keys are attribute keywords (``StudyDate``) or tags (``00080020``) of the
searched level or a level above it: a series search may name study attributes, an
instance search any attribute (the relational searches of PS3.18 10.6.1). A key of a
lower level (``SOPInstanceUID`` in a study search) can never match and is refused, as
are unknown keywords and sequence matching (``a.b``): 400 naming the parameter.

* ``UI``: UID list matching - one UID or several separated by ``,`` or ``\\`` (the key
  may also be repeated); UIDs are digits and dots, never wildcards.
* ``DA``, ``TM``, ``DT``: a single value or a range: ``20200101-20201231``, ``20200101-``
  (from), ``-20201231`` (until); ``DA`` values are 8 digits (``YYYYMMDD``); ``DT`` ranges
  without a UTC offset.
* text VRs (``AE CS LO LT PN SH ST UC UR UT``): single value matching, with wildcard
  matching when the value holds ``*`` (any run of characters) or ``?`` (one character);
  case-sensitive. A multi-valued attribute matches when one of its values does.
* numbers (``IS DS US SS UL SL UV SV FL FD``): equal as numbers; a key that is not a
  number is refused.
* an empty value (``Modality=``), or only ``*`` (PS3.4 C.2.2.2.4: equivalent to it), is
  universal matching: everything matches, and the attribute is returned.
  ``SpecificCharacterSet`` is never matched (PS3.4 C.2.2.2), only returned.

An entity whose attribute is absent or empty does not match any other key. This
matters here: de-identification empties or removes names, IDs and accession numbers, so a
search by ``PatientName=SMITH*`` finds nothing, as it should.

``fuzzymatching=true`` is accepted (PS3.18 8.3.4.2): it applies to person names (``PN``)
only, which then match case-insensitively, and a value without wildcards matches names
that start with it; ``false`` (the default) is literal matching. Since de-identification
empties person names, it rarely finds more. ``emptyvaluematching=true`` and
``multiplevaluematching=true`` (PS3.18 8.3.4.5-6) are not supported: the search runs
without them and the answer carries the ``Warning`` the standard words for that.

``includefield`` (repeated or comma-separated keywords or tags, or ``all``) adds
attributes to the defaults of PS3.18 Tables 10.6.3-3 to 10.6.3-5 (plus, for the
relational searches, the defaults of the levels above); ``all`` returns every attribute
available at the level. ``limit`` and ``offset`` page the answer; a page never holds more
than :data:`MAX_RESULTS` results, and a ``Warning`` says when more remain (PS3.18 8.3.4.4).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from pydicom.datadict import dictionary_VR, tag_for_keyword

from cpms_hub.domain import ValidationError

__all__ = [
    "INSTANCE_DEFAULTS",
    "LEVEL_ALL",
    "MAX_RESULTS",
    "SERIES_DEFAULTS",
    "STUDY_DEFAULTS",
    "Query",
    "parse_query",
    "tag_of",
]

#: query parameters that are not matching keys
_FLAGS = ("fuzzymatching", "emptyvaluematching", "multiplevaluematching")
_RESERVED = {"limit", "offset", "includefield", *_FLAGS}
#: VRs where ``*`` and ``?`` are wildcards (PS3.4 C.2.2.2.4: not dates, numbers, UIDs, ages)
_WILDCARD_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}
_NUMBER_VRS = {"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"}
_RANGE_VRS = {"DA", "TM", "DT"}
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
#: the most results one answer holds, whatever ``limit`` asks (PS3.18 8.3.4.4)
MAX_RESULTS = 10_000
_CHARSET = "00080005"
_MODALITY = "00080060"

#: PS3.18 8.3.4.4-6: the Warning texts, word for word
_MORE = "There are additional results that can be requested."
_CAPPED = (
    "The number of results exceeded the maximum supported by the server. "
    "Additional results can be requested."
)
_UNSUPPORTED = {
    "emptyvaluematching": "The emptyvaluematching parameter is not supported. "
    "Empty Value Matching has not been performed.",
    "multiplevaluematching": "The multiplevaluematching parameter is not supported. "
    "Multiple Value Matching has not been performed.",
}


def _tags(*keywords: str) -> frozenset[str]:
    return frozenset(f"{tag_for_keyword(k):08X}" for k in keywords)


#: PS3.18 Table 10.6.3-3 (6.7.1-2 in editions before 2019): what a study search returns
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
#: PS3.18 Table 10.6.3-4 (6.7.1-2a): series
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
#: PS3.18 Table 10.6.3-5 (6.7.1-2b): instances
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


def _key_level(tag: str, level: str, param: str) -> None:
    """Refuse a key below the searched level: no entity of the level could ever match it."""
    if level == "instance" or _study_all(tag) or tag == _MODALITY:
        return  # Modality at the study level matches any of the study's series
    if level == "series" and _series_all(tag):
        return
    below, where = ("a series", "series") if _series_all(tag) else ("an instance", "instances")
    raise ValidationError(
        param, f"is {below} attribute, not a key of a {level} search: search {where} instead"
    )


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
        if self.universal or self.tag == _CHARSET:
            return True  # universal matching; the character set is never matched
        values = _values(attr)
        if not values:
            return False
        return any(self._one(v) for v in values)

    @property
    def universal(self) -> bool:
        """An empty key, or one of only ``*`` (PS3.4 C.2.2.2.3, C.2.2.2.4 note)."""
        return self.text.strip("*") == ""

    def uids(self) -> list[str]:
        return [u.strip() for u in re.split(r"[,\\]", self.text) if u.strip()]

    def _one(self, value: object) -> bool:
        if self.vr == "UI":
            return str(value) in self.uids()
        if self.vr in _RANGE_VRS:
            return self._in_range(str(value))
        if self.vr in _NUMBER_VRS:
            try:
                return Decimal(str(value)) == Decimal(self.text)
            except InvalidOperation:
                return False
        text, value = self.text, str(value)
        fold = self.fuzzy and self.vr == "PN"
        if self.vr in _WILDCARD_VRS and ("*" in text or "?" in text):
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
    #: PS3.18 Warning texts owed whatever the results (parameters not supported)
    warnings: tuple[str, ...] = ()

    def matches(self, entity: Mapping[str, Mapping]) -> bool:
        return all(k.matches(entity.get(k.tag)) for k in self.keys)

    def only_uid(self, tag: str) -> str | None:
        """The one UID a key on ``tag`` names, if it names exactly one: a search can
        then read only that study (or series) from the store."""
        for k in self.keys:
            if k.tag == tag and not k.universal and len(k.uids()) == 1:
                return k.uids()[0]
        return None

    def mentions(self, tags: Iterable[str]) -> bool:
        """Whether the answer may need any of ``tags``: a key, an ``includefield``, ``all``."""
        tags = set(tags)
        return (
            self.include_all or bool(tags & self.include) or any(k.tag in tags for k in self.keys)
        )

    def project(self, entity: Mapping[str, Mapping], level: str, above: Iterable[str] = ()) -> dict:
        """The attributes the answer carries: defaults, matching keys and ``includefield``.

        ``above`` names the levels whose defaults a relational search adds (PS3.18
        10.6.3.3: all series carry their study's attributes, all instances their series'
        and study's).
        """
        return self.projector(level, above)(entity)

    def projector(
        self, level: str, above: Iterable[str] = ()
    ) -> Callable[[Mapping[str, Mapping]], dict]:
        """:meth:`project` for many entities: what is wanted is worked out once."""
        defaults, in_all = LEVEL_ALL[level]
        wanted = set(defaults) | {k.tag for k in self.keys} | set(self.include)
        for upper in above:
            wanted |= LEVEL_ALL[upper][0]
        include_all = self.include_all

        def project(entity: Mapping[str, Mapping]) -> dict:
            if include_all:
                tags = [t for t in entity if t in wanted or in_all(t)]
            else:  # a few dozen wanted tags against a whole header: look the few up
                tags = [t for t in wanted if t in entity]
            return {t: entity[t] for t in sorted(tags)}

        return project

    def page(self, items: list) -> tuple[list, str | None]:
        """This page of ``items``, and the Warning text when more remain past it."""
        rest = items[self.offset :]
        size = min(self.limit or MAX_RESULTS, MAX_RESULTS)
        if len(rest) <= size:
            return rest, None
        return rest[:size], _MORE if 0 < self.limit <= MAX_RESULTS else _CAPPED


def _int(params: Mapping[str, list[str]], name: str) -> int:
    values = params.get(name, [])
    if not values:
        return 0
    if len(values) > 1 or not values[0].isdigit():
        raise ValidationError(name, "is one whole number, 0 or more")
    return int(values[0])


def _flag(params: Mapping[str, list[str]], name: str) -> bool:
    values = params.get(name, [])
    if not values:
        return False  # PS3.18 8.3.4.2: absent is false
    if len(values) > 1 or values[0].lower() not in ("true", "false"):
        raise ValidationError(name, "is true or false")
    return values[0].lower() == "true"


def _check_value(vr: str, text: str, param: str) -> None:
    """Refuse a key value that cannot be matched at its VR (PS3.4 C.2.2.2)."""
    if text.strip("*") == "":
        return  # universal matching
    if vr == "UI":
        uids = [u.strip() for u in re.split(r"[,\\]", text) if u.strip()]
        if not uids or not all(_UID.fullmatch(u) and len(u) <= 64 for u in uids):
            raise ValidationError(param, "is a UID or a list of UIDs (digits and dots)")
    elif vr in _RANGE_VRS:
        for bound in text.split("-", 1):
            if bound:
                _date_key(bound, vr, param)
    elif vr in _NUMBER_VRS:
        try:
            Decimal(text)
        except InvalidOperation:
            raise ValidationError(param, f"is a number ({vr})") from None
    elif vr not in _WILDCARD_VRS and ("*" in text or "?" in text):
        raise ValidationError(param, f"wildcards do not apply to {vr} values")


def parse_query(params: Iterable[tuple[str, str]], level: str | None = None) -> Query:
    """A :class:`Query` from the request's query parameters (repeats kept for includefield).

    With ``level`` (``study``, ``series`` or ``instance``), a key of a lower level than the
    search is refused.
    """
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    fuzzy = _flag(grouped, "fuzzymatching")
    warnings = tuple(text for name, text in _UNSUPPORTED.items() if _flag(grouped, name))
    limit, offset = _int(grouped, "limit"), _int(grouped, "offset")
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
        param = name[:64]
        tag = tag_of(name, param)
        vr = _vr(tag)
        if len(values) > 1 and vr != "UI":  # UID lists may come as repeated keys
            raise ValidationError(param, "is given more than once")
        text = ",".join(values)
        if vr == "SQ":
            raise ValidationError(param, "sequence matching is not supported")
        if level is not None:
            _key_level(tag, level, param)
        _check_value(vr, text, param)
        keys.append(_Key(tag, vr, text, param, fuzzy))
    return Query(tuple(keys), frozenset(include), include_all, fuzzy, limit, offset, warnings)
