"""Aggregate reports hide small cells; the registry export follows the EU RD Platform CDE."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cpms_hub.analysis import report
from cpms_hub.analysis.reports import suppress
from cpms_hub.exports.registry import CDE_COLUMNS, registry_csv
from tests.analysis.populations import RESULTS, TREATMENTS, disease_terms, make_facts

DISEASES = disease_terms()


def test_small_cells_are_suppressed_and_one_more_when_alone() -> None:
    cells = suppress({("a",): 10, ("b",): 3, ("c",): 7, ("d",): 0})
    by = {c["key"][0]: c for c in cells}
    assert by["b"]["count"] is None and by["b"]["suppressed"]
    # b alone would be total - 17: c, the next smallest, goes too
    assert by["c"]["count"] is None
    assert by["a"]["count"] == 10
    assert by["d"]["count"] == 0 and not by["d"]["suppressed"]


def test_report_tables_never_show_a_count_below_five() -> None:
    facts = make_facts(400, seed=5, rare=0.3, diseases=DISEASES)
    r = report(facts)
    assert r["cases"] == 400
    for table in ("counts", "status"):
        for cell in r[table]["cells"]:
            assert cell["count"] is None or cell["count"] == 0 or cell["count"] >= 5
    assert r["counts"]["columns"] == ["disease_group", "network", "year"]
    for group in r["time_to_outcome"]["groups"]:
        assert group["n"] >= 5 and group["p25"] <= group["median"] <= group["p75"]
    table = r["outcomes_by_treatment"]
    assert table["available"] is True
    assert table["columns"] == ["treatment", "result at follow-up"]
    for cell in table["cells"]:
        assert cell["count"] is None or cell["count"] >= 5


def test_outcomes_by_treatment_counts_coded_follow_ups_and_pending_ones() -> None:
    facts = [
        replace(f, outcome_at=f.submitted_at + timedelta(days=30), treatment=None, followup=None)
        for f in make_facts(30, seed=6, diseases=DISEASES)
    ]
    treated = [replace(f, treatment="medicinal", followup="improved") for f in facts[:12]]
    r = report(treated + facts[12:])
    table = r["outcomes_by_treatment"]
    assert table["available"] is True
    cells = {tuple(c["key"]): c["count"] for c in table["cells"]}
    assert cells == {("medicinal", "improved"): 12, ("not recorded", "pending"): 18}
    assert "outcomes" not in table  # a total beside a lone hidden cell would give it back


def test_outcomes_by_treatment_is_unavailable_without_a_signed_outcome() -> None:
    facts = [
        replace(f, outcome_at=None, treatment=None, followup=None)
        for f in make_facts(20, seed=7, diseases=DISEASES)
    ]
    table = report(facts)["outcomes_by_treatment"]
    assert table == {
        "available": False,
        "reason": "no consenting case has a signed outcome yet",
    }


@settings(max_examples=60, deadline=None)
@given(
    counts=st.dictionaries(
        st.tuples(st.sampled_from(TREATMENTS), st.sampled_from(RESULTS)),
        st.integers(min_value=1, max_value=12),
        min_size=1,
        max_size=12,
    )
)
def test_no_follow_up_cell_can_be_told_from_the_table(counts) -> None:  # noqa: ANN001
    """Hidden cells are never below 5 shown, never alone; the shown ones are exact."""
    base = make_facts(1, seed=3, diseases=DISEASES)[0]
    signed = replace(base, outcome_at=base.submitted_at + timedelta(days=9))
    facts = [
        replace(signed, id=f"{t}-{r}-{i}", treatment=t, followup=r)
        for (t, r), n in counts.items()
        for i in range(n)
    ]
    r = report(facts)
    cells = r["outcomes_by_treatment"]["cells"]
    hidden = [c for c in cells if c["suppressed"]]
    # a lone hidden cell is the whole table: then no total may give it away either
    assert len(hidden) != 1 or len(cells) == 1
    outcomes = r["time_to_outcome"]["outcomes"]
    assert outcomes == len(facts) if len(facts) >= 5 else outcomes is None
    for c in cells:
        n = counts[tuple(c["key"])]
        assert (c["count"] is None) == c["suppressed"]
        if n < 5:
            assert c["suppressed"]
        if not c["suppressed"]:
            assert c["count"] == n


def test_time_to_outcome_in_days() -> None:
    facts = make_facts(10, seed=8, diseases=DISEASES)
    fixed = [
        replace(f, outcome_at=f.submitted_at + timedelta(days=10 * (i + 1)))
        for i, f in enumerate(facts)
    ]
    r = report(fixed)
    pooled = {g["disease_group"]: g for g in r["time_to_outcome"]["groups"]}
    assert sum(g["n"] for g in pooled.values()) == 10 or "other groups" in pooled


def test_registry_csv_has_the_common_data_elements() -> None:
    facts = make_facts(3, seed=9, diseases=DISEASES)
    facts = [
        replace(facts[0], pseudonym="=HYPERLINK(evil)", genetics=(("ATM", "NM_000051.4:c.1A>G"),)),
        replace(
            facts[1], pseudonym="LYON-2", consent=frozenset({"registries", "research-contact"})
        ),
        replace(facts[2], pseudonym="LYON-3", confirmed=()),
    ]
    rows = list(csv.DictReader(io.StringIO(registry_csv(facts))))
    assert list(rows[0]) == list(CDE_COLUMNS) and len(CDE_COLUMNS) == 17
    assert rows[0]["1.1 Pseudonym"] == "'=HYPERLINK(evil)"  # never a formula
    assert rows[0]["6.3 Genetic diagnosis"] == "ATM:NM_000051.4:c.1A>G"
    assert rows[1]["7.1 Agreement to be contacted for research purposes"] == "Yes"
    assert rows[0]["7.1 Agreement to be contacted for research purposes"] == "No"
    assert rows[1]["2.1 Date of birth"] == str(facts[1].birth_year)
    # nothing confirmed: the phenotypes describe the undiagnosed case
    assert rows[2]["6.1 Diagnosis of the rare disease (ORPHAcode)"] == ""
    assert rows[2]["6.4 Undiagnosed case"] == ";".join(facts[2].phenotypes)
