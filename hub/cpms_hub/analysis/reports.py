"""Aggregate reports over the consenting cases, with small cells suppressed.

Counts below :data:`~cpms_hub.domain.analysis.SMALL_CELL` (5) are never
shown: the cell says ``null`` and ``suppressed: true``. So that a table's
total cannot give a lone suppressed cell back by subtraction, a table with
exactly one suppressed cell has its next smallest cell suppressed too
(secondary suppression, as in the usual statistical disclosure practice).

Tables:

- ``counts``: cases by disease group, network and year of submission;
- ``time_to_outcome``: days from submission to the signed outcome, per disease
  group (n, quartiles); groups with fewer than 5 outcomes are pooled into
  "other groups", which is itself left out if still below 5;
- ``status``: cases by lifecycle status;
- ``outcomes_by_treatment``: every case with a signed outcome, by the category
  of treatment followed and the result at follow-up, both coded by the case's
  clinician (:mod:`cpms_hub.domain.followup`; the outcome's free-text plan is
  never read). A signed outcome not yet followed up counts as
  (``not recorded``, ``pending``), so the table shows how much is still
  unknown. ``available: false`` while no case has a signed outcome.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence

from cpms_hub.domain.analysis import SMALL_CELL, CaseFacts

from .hierarchies import disease_group

__all__ = ["report", "suppress", "outcomes_by_treatment"]

NO_DIAGNOSIS = "no diagnosis recorded"
NOT_RECORDED = "not recorded"
PENDING = "pending"


def _group(f: CaseFacts) -> str:
    code = f.main_diagnosis
    return disease_group(code) if code else NO_DIAGNOSIS


def suppress(cells: dict[tuple, int], small: int = SMALL_CELL) -> list[dict]:
    """Cells with counts below ``small`` hidden, plus one more if only one was."""
    hidden = {key for key, n in cells.items() if 0 < n < small}
    if len(hidden) == 1:
        rest = sorted((n, key) for key, n in cells.items() if key not in hidden and n > 0)
        if rest:
            hidden.add(rest[0][1])
    return [
        {"key": list(key), "count": None if key in hidden else n, "suppressed": key in hidden}
        for key, n in sorted(cells.items())
    ]


def _quartiles(values: list[float]) -> dict:
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"n": len(values), "p25": round(q1, 1), "median": round(q2, 1), "p75": round(q3, 1)}


def outcomes_by_treatment(facts: Sequence[CaseFacts], *, small: int = SMALL_CELL) -> dict:
    """Signed outcomes by treatment category and result at follow-up, small cells hidden."""
    followed = [f for f in facts if f.outcome_at is not None or f.treatment is not None]
    if not followed:
        return {
            "available": False,
            "reason": "no consenting case has a signed outcome yet",
        }
    cells = Counter((f.treatment or NOT_RECORDED, f.followup or PENDING) for f in followed)
    return {
        "available": True,
        "columns": ["treatment", "result at follow-up"],
        # no total: beside a lone suppressed cell it would give the cell back
        "cells": suppress(dict(cells), small),
    }


def report(facts: Sequence[CaseFacts], *, small: int = SMALL_CELL) -> dict:
    """Every table of the report, over ``facts`` (already consent-filtered)."""
    groups = {f.id: _group(f) for f in facts}
    counts: Counter[tuple] = Counter(
        (groups[f.id], f.network, (f.submitted_at or f.created_at).year) for f in facts
    )
    by_status: Counter[tuple] = Counter((f.status.value,) for f in facts)

    delays: dict[str, list[float]] = defaultdict(list)
    for f in facts:
        if f.submitted_at and f.outcome_at:
            days = (f.outcome_at - f.submitted_at).total_seconds() / 86400
            delays[groups[f.id]].append(max(0.0, days))
    timing = []
    pooled: list[float] = []
    for group, values in sorted(delays.items()):
        if len(values) >= small:
            timing.append({"disease_group": group, **_quartiles(values)})
        else:
            pooled.extend(values)
    if len(pooled) >= small:
        timing.append({"disease_group": "other groups", **_quartiles(pooled)})

    outcomes = outcomes_by_treatment(facts, small=small)
    n_outcomes = sum(len(v) for v in delays.values())
    return {
        "cases": len(facts),
        "small_cell": small,
        "counts": {
            "columns": ["disease_group", "network", "year"],
            "cells": suppress(dict(counts), small),
        },
        "status": {"columns": ["status"], "cells": suppress(dict(by_status), small)},
        "time_to_outcome": {
            "unit": "days",
            "groups": timing,
            # the number of signed outcomes is also the total of outcomes_by_treatment:
            # below 5 it would tell a lone suppressed cell there
            "outcomes": n_outcomes if n_outcomes >= small else None,
        },
        "outcomes_by_treatment": outcomes,
    }
