"""QIDO-RS matching (PS3.4 C.2.2.2) over DICOM JSON: UIDs, wildcards, ranges, includefield,
the keys each level accepts, paging and the Warning texts of PS3.18 8.3.4."""

from __future__ import annotations

import pytest

from cpms_hub.domain import ValidationError
from cpms_hub.service.dicomweb_query import (
    MAX_RESULTS,
    SERIES_DEFAULTS,
    STUDY_DEFAULTS,
    parse_query,
)

STUDY = {
    "0020000D": {"vr": "UI", "Value": ["2.25.1"]},
    "00080020": {"vr": "DA", "Value": ["20200615"]},
    "00080030": {"vr": "TM", "Value": ["123045"]},
    "00081030": {"vr": "LO", "Value": ["CT Chest with contrast"]},
    "00080061": {"vr": "CS", "Value": ["CT", "SR"]},
    "00100010": {"vr": "PN"},  # emptied by de-identification
    "00100040": {"vr": "CS", "Value": ["F"]},
    "00201208": {"vr": "IS", "Value": [12]},
    "00181030": {"vr": "LO", "Value": ["chest"]},
}
NAMED = {**STUDY, "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Anon^Case"}]}}


def _q(**params: str):
    return parse_query(list(params.items()))


@pytest.mark.parametrize(
    ("params", "hit"),
    [
        ({"StudyInstanceUID": "2.25.1"}, True),
        ({"StudyInstanceUID": "2.25.9,2.25.1"}, True),  # UID list
        ({"0020000D": "2.25.9\\2.25.1"}, True),  # by tag, backslash list
        ({"StudyInstanceUID": "2.25.10"}, False),
        ({"StudyDescription": "CT*"}, True),
        ({"StudyDescription": "*chest*"}, False),  # case-sensitive
        ({"StudyDescription": "*Chest*"}, True),
        ({"StudyDescription": "CT Chest with contras?"}, True),
        ({"StudyDescription": "CT"}, False),  # single value: the whole value
        ({"ModalitiesInStudy": "SR"}, True),  # any of a multi-valued attribute
        ({"StudyDate": "20200101-20201231"}, True),
        ({"StudyDate": "20200616-"}, False),
        ({"StudyDate": "-20200615"}, True),
        ({"StudyDate": "20200615"}, True),
        ({"StudyTime": "1200-1300"}, True),
        ({"StudyTime": "1231-"}, False),
        ({"NumberOfStudyRelatedInstances": "12"}, True),
        ({"NumberOfStudyRelatedInstances": "12.0"}, True),
        ({"PatientSex": ""}, True),  # universal matching
        ({"PatientName": "S*"}, False),  # emptied: nothing to match
        ({"PatientName": "*"}, True),  # PS3.4 C.2.2.2.4: "*" is universal matching
        ({"PatientName": ""}, True),
        ({"StudyDate": "*"}, True),
        ({"StudyInstanceUID": "*"}, True),
        ({"SpecificCharacterSet": "ISO_IR 192"}, True),  # never matched, only returned
        ({"StudyInstanceUID": " 2.25.9 , 2.25.1 "}, True),
        ({"StudyDate": "20200101-20201231", "PatientSex": "M"}, False),  # all keys must match
    ],
)
def test_matching(params: dict, hit: bool) -> None:
    assert _q(**params).matches(STUDY) is hit


def test_fuzzy_matching_folds_case_of_person_names_only() -> None:
    assert not _q(PatientName="anon").matches(NAMED)
    assert _q(PatientName="anon", fuzzymatching="true").matches(NAMED)
    assert _q(PatientName="ANON^*", fuzzymatching="true").matches(NAMED)
    assert not _q(StudyDescription="ct*", fuzzymatching="true").matches(NAMED)


def test_returned_attributes() -> None:
    plain = _q().project(STUDY, "study")
    assert set(plain) <= STUDY_DEFAULTS and "00181030" not in plain and "00080020" in plain
    # a matching key is returned; includefield by keyword or tag, repeated or listed
    assert "00181030" in _q(ProtocolName="chest").project(STUDY, "study")
    q = parse_query([("includefield", "00181030"), ("includefield", "PatientSex,StudyDate")])
    assert "00181030" in q.project(STUDY, "study")
    everything = _q(includefield="all").project(STUDY, "study")
    assert "00100040" in everything  # Patient module


def test_relational_answers_carry_the_defaults_of_the_levels_above() -> None:
    series = {
        **STUDY,
        "0020000E": {"vr": "UI", "Value": ["2.25.2"]},
        "00080060": {"vr": "CS", "Value": ["CT"]},
    }
    hierarchical = _q().project(series, "series")
    assert set(hierarchical) <= SERIES_DEFAULTS and "00080020" not in hierarchical
    relational = _q().project(series, "series", ("study",))
    assert {"00080020", "0020000E", "00201208"} <= set(relational)
    # a study attribute is a key of a series search: it matches, and is returned
    q = parse_query([("StudyDate", "20200101-20201231")], "series")
    assert q.matches(series) and "00080020" in q.project(series, "series")


def test_paging() -> None:
    more = "There are additional results that can be requested."
    q = _q(limit="2", offset="1")
    assert q.page([1, 2, 3, 4]) == ([2, 3], more)
    assert q.page([1, 2, 3]) == ([2, 3], None)
    assert _q().page([1, 2]) == ([1, 2], None)
    assert _q(offset="5").page([1, 2]) == ([], None)
    # a page never holds more than the server's maximum, whatever limit asks (8.3.4.4)
    many = list(range(MAX_RESULTS + 2))
    for q in (_q(), _q(limit=str(MAX_RESULTS * 10))):
        page, warning = q.page(many)
        assert len(page) == MAX_RESULTS and warning.startswith("The number of results exceeded")
    assert _q(offset=str(MAX_RESULTS)).page(many) == ([MAX_RESULTS, MAX_RESULTS + 1], None)


def test_matching_flags_and_their_warnings() -> None:
    assert _q(fuzzymatching="false").fuzzy is False and _q().warnings == ()
    q = _q(emptyvaluematching="true", multiplevaluematching="true", Modality="")
    assert [w.split(" parameter")[0] for w in q.warnings] == [
        "The emptyvaluematching",
        "The multiplevaluematching",
    ]
    assert _q(emptyvaluematching="false").warnings == ()


def test_uid_lists_may_come_as_repeated_keys() -> None:
    q = parse_query([("StudyInstanceUID", "2.25.9"), ("StudyInstanceUID", "2.25.1")])
    assert q.matches(STUDY)
    assert (
        q.only_uid("0020000D") is None
        and _q(StudyInstanceUID="2.25.1").only_uid("0020000D") == "2.25.1"
    )


@pytest.mark.parametrize(
    ("level", "params", "field"),
    [
        ("study", {"SOPInstanceUID": "1.2"}, "SOPInstanceUID"),
        ("study", {"SeriesDescription": "x"}, "SeriesDescription"),
        ("series", {"InstanceNumber": "1"}, "InstanceNumber"),
        ("series", {"00080018": "1.2"}, "00080018"),
    ],
)
def test_a_key_below_the_searched_level_is_refused(level: str, params: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_query(list(params.items()), level)
    assert err.value.field == field and err.value.reason.endswith("instead")


@pytest.mark.parametrize(
    ("level", "params"),
    [
        ("study", {"Modality": "CT"}),  # any of the study's series
        ("study", {"PatientAge": "040Y"}),
        ("series", {"StudyDate": "20200615", "SeriesNumber": "1"}),
        ("instance", {"StudyDescription": "CT*", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}),
    ],
)
def test_keys_of_the_level_and_above_are_accepted(level: str, params: dict) -> None:
    assert len(parse_query(list(params.items()), level).keys) == len(params)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"NoSuchKeyword": "x"}, "NoSuchKeyword"),
        ({"includefield": "Nope"}, "includefield"),
        ({"StudyDate": "2020-01-01"}, "StudyDate"),
        ({"StudyDate": "2020"}, "StudyDate"),
        ({"limit": "-1"}, "limit"),
        ({"emptyvaluematching": "yes"}, "emptyvaluematching"),
        ({"StudyInstanceUID": "2.25.*"}, "StudyInstanceUID"),  # no wildcards in UIDs
        ({"StudyInstanceUID": "abc"}, "StudyInstanceUID"),
        ({"NumberOfStudyRelatedInstances": "1?"}, "NumberOfStudyRelatedInstances"),
        ({"PatientAge": "04?Y"}, "PatientAge"),  # AS: no wildcards (PS3.4 C.2.2.2.4)
        ({"offset": "x"}, "offset"),
        ({"fuzzymatching": "maybe"}, "fuzzymatching"),
        ({"ReferencedSeriesSequence.SeriesInstanceUID": "1"}, "ReferencedSeriesSequence."),
        ({"ReferencedSeriesSequence": "1"}, "ReferencedSeriesSequence"),
    ],
)
def test_bad_queries_name_the_parameter(params: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        _q(**params)
    assert err.value.field.startswith(field.rstrip("."))


def test_a_key_given_twice_is_refused() -> None:
    with pytest.raises(ValidationError):
        parse_query([("Modality", "CT"), ("Modality", "MR")])
