"""Every exported cohort is k-anonymous over its quasi-identifiers, whatever the population.

Property tests (hypothesis) over generated populations, including ones made
only of unique rare cases, check the output itself (independently of the
anonymiser's own check): every combination of quasi-identifier values that
leaves is shared by at least k rows; no value finer than the first level of
its hierarchy leaves; what was suppressed is counted and within the budget,
or the export is refused.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpms_hub.analysis import anonymise
from cpms_hub.domain import ValidationError
from cpms_hub.domain.analysis import COHORT_COLUMNS, IDENTIFYING_COLUMNS, CohortRequest
from tests.analysis.populations import disease_terms, make_facts

DISEASES = disease_terms()
QI_SETS = [
    None,
    ["age_band", "sex", "region"],
    ["diagnosis", "phenotypes", "period"],
    ["age_band", "onset_band", "sex", "region", "period", "network", "diagnosis", "phenotypes"],
]


def _freeze(value):  # noqa: ANN001, ANN202
    return tuple(value) if isinstance(value, list) else value


def assert_k_anonymous(cohort, qis: list[str], k: int) -> None:  # noqa: ANN001
    rows = cohort.records()
    classes = Counter(tuple(_freeze(r[q]) for q in qis) for r in rows)
    assert not classes or min(classes.values()) >= k, min(classes.values())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=0, max_value=400),
    seed=st.integers(min_value=0, max_value=10_000),
    rare=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    k=st.integers(min_value=2, max_value=12),
    qis=st.sampled_from(QI_SETS),
    max_suppression=st.sampled_from([0.0, 0.05, 0.2, 1.0]),
)
def test_every_export_is_k_anonymous(n, seed, rare, k, qis, max_suppression) -> None:
    facts = make_facts(n, seed=seed, rare=rare, diseases=DISEASES)
    fields = qis + ["status"] if qis else None
    request = CohortRequest(k=k, fields=fields, max_suppression=max_suppression)
    try:
        cohort = anonymise(facts, request)
    except ValidationError as refused:
        # refused, never shrunk silently: only when the budget cannot be met
        assert refused.field == "quasi_identifiers" and "cannot reach" in refused.reason
        return
    s = cohort.summary
    assert_k_anonymous(cohort, list(request.quasi_identifiers), k)
    assert s["cases_in"] == n and s["cases_out"] == cohort.size
    assert s["cases_suppressed"] == n - cohort.size
    assert s["cases_suppressed"] <= max_suppression * n + 1e-9
    assert cohort.size == 0 or s["smallest_class"] >= k
    # nothing finer than the first level ever leaves
    if "age_band" in cohort.columns:
        assert all(
            v in ("*", "unknown") or "-" in v or "+" in v for v in cohort.columns["age_band"]
        )
    if "period" in cohort.columns:
        assert all(not re.match(r"^\d{4}-\d{2}-\d{2}", v) for v in cohort.columns["period"])


@settings(max_examples=10, deadline=None)
@given(n=st.integers(min_value=1, max_value=60), seed=st.integers(0, 1000))
def test_a_population_of_unique_rare_cases_leaks_nothing(n, seed) -> None:
    """Each case alone in its class: generalise to the top, or suppress all of them."""
    facts = make_facts(n, seed=seed, rare=1.0, diseases=DISEASES)
    cohort = anonymise(facts, CohortRequest(k=5, max_suppression=1.0))
    assert_k_anonymous(cohort, sorted(IDENTIFYING_COLUMNS), 5)
    if n < 5:
        assert cohort.size == 0 and cohort.summary["cases_suppressed"] == n


def test_default_export_has_every_column_and_says_what_was_done() -> None:
    facts = make_facts(600, seed=1, rare=0.05, diseases=DISEASES)
    cohort = anonymise(facts, CohortRequest())
    assert list(cohort.columns) == list(COHORT_COLUMNS)
    s = cohort.summary
    assert s["k"] == 5 and set(s["quasi_identifiers"]) == IDENTIFYING_COLUMNS
    assert set(s["generalisation"]) == set(COHORT_COLUMNS)
    assert all({"level", "top", "as"} <= set(g) for g in s["generalisation"].values())
    assert_k_anonymous(cohort, s["quasi_identifiers"], 5)
    # nothing of the store's own identity leaves: no case ids, no pseudonyms
    flat = repr(cohort.columns)
    assert "case-1-" not in flat


def test_generalisation_is_not_coarser_than_needed() -> None:
    """Sex alone, 600 cases: no reason to hide it."""
    facts = make_facts(600, seed=2, diseases=DISEASES)
    cohort = anonymise(facts, CohortRequest(fields=("sex",)))
    assert cohort.summary["generalisation"]["sex"]["level"] == 0
    assert cohort.summary["cases_suppressed"] == 0


@pytest.mark.parametrize(
    ("kwargs", "field", "says"),
    [
        ({"k": 1}, "k", "at least 2"),
        ({"k": 0}, "k", "at least 2"),
        ({"k": "5"}, "k", "whole number"),
        ({"fields": ("age", "sex")}, "fields", "unknown column 'age'"),
        ({"quasi_identifiers": ("sex", "shoe_size")}, "quasi_identifiers", "unknown column"),
        (
            {"fields": ("sex", "region"), "quasi_identifiers": ("sex",)},
            "quasi_identifiers",
            "region is exported and describes the patient",
        ),
        ({"max_suppression": 1.5}, "max_suppression", "from 0 to 1"),
        ({"format": "xlsx"}, "format", "json or parquet"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(kwargs, field, says) -> None:
    with pytest.raises(ValidationError) as err:
        CohortRequest(**kwargs)
    assert err.value.field == field and says in err.value.reason


def test_unreachable_k_is_refused_not_shrunk() -> None:
    facts = make_facts(8, seed=3, rare=1.0, diseases=DISEASES)
    with pytest.raises(ValidationError) as err:
        anonymise(facts, CohortRequest(k=10, max_suppression=0.5))
    assert "cannot reach k=10" in err.value.reason and "8 of 8" in err.value.reason


def test_measures_may_be_promoted_to_quasi_identifiers() -> None:
    facts = make_facts(300, seed=4, diseases=DISEASES)
    req = CohortRequest(
        fields=("sex", "weeks_to_outcome"), quasi_identifiers=("sex", "weeks_to_outcome")
    )
    cohort = anonymise(facts, req)
    assert_k_anonymous(cohort, ["sex", "weeks_to_outcome"], 5)
    assert cohort.summary["generalisation"]["weeks_to_outcome"]["quasi_identifier"] is True
