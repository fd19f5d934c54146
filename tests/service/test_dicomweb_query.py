"""QIDO-RS matching (PS3.4 C.2.2.2) over DICOM JSON: UIDs, wildcards, ranges, includefield."""

from __future__ import annotations

import pytest

from cpms_hub.domain import ValidationError
from cpms_hub.service.dicomweb_query import STUDY_DEFAULTS, parse_query

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
        ({"PatientName": "*"}, False),  # emptied: nothing to match
        ({"PatientName": ""}, True),
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


def test_paging() -> None:
    q = _q(limit="2", offset="1")
    assert q.page([1, 2, 3, 4]) == ([2, 3], True)
    assert q.page([1, 2, 3]) == ([2, 3], False)
    assert _q().page([1, 2]) == ([1, 2], False)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"NoSuchKeyword": "x"}, "NoSuchKeyword"),
        ({"includefield": "Nope"}, "includefield"),
        ({"StudyDate": "2020-01-01"}, "StudyDate"),
        ({"StudyDate": "2020"}, "StudyDate"),
        ({"limit": "-1"}, "limit"),
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
