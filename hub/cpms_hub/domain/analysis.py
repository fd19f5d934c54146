"""Anonymised analysis: what a cohort export may contain and how it is asked for.

Pseudonymised is not anonymous (GDPR Recital 26): a rare disease makes a
patient unique, so a cohort leaves the store only after it was made
k-anonymous (Sweeney, Int J Uncertain Fuzz 10:557, 2002): every combination
of its quasi-identifiers is shared by at least ``k`` cases. The columns a
cohort may carry are listed in :data:`COHORT_COLUMNS`; each has a
generalisation hierarchy (in :mod:`cpms_hub.analysis.hierarchies`), and none
is ever exported finer than its first level (ages in 5-year bands, countries
as UN M49 sub-regions, dates as quarters).

Columns that describe the patient (:data:`IDENTIFYING_COLUMNS`) are always
quasi-identifiers when exported; the others (:data:`MEASURE_COLUMNS`, what
happened to the case) become quasi-identifiers only when asked.

:class:`CaseFacts` is the store's decrypted view of one case that the
analyses work on; it never leaves the store service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from .cases import CaseRef, CaseStatus
from .errors import ValidationError

__all__ = [
    "CaseFacts",
    "CohortRequest",
    "CohortFormat",
    "COHORT_COLUMNS",
    "IDENTIFYING_COLUMNS",
    "MEASURE_COLUMNS",
    "MIN_K",
    "DEFAULT_K",
    "MAX_K",
    "DEFAULT_MAX_SUPPRESSION",
    "SMALL_CELL",
    "MAX_SIMILAR",
]

#: k below 2 would let a single case through: never allowed
MIN_K = 2
DEFAULT_K = 5
MAX_K = 1000
#: share of cases that may be suppressed before the export is refused instead
DEFAULT_MAX_SUPPRESSION = 0.05
#: aggregate counts below this are suppressed in reports
SMALL_CELL = 5
MAX_SIMILAR = 100

#: every column a cohort may carry, and what it holds
COHORT_COLUMNS: dict[str, str] = {
    "age_band": "age at submission (from the year of birth), in bands of 5 years or wider",
    "onset_band": "age at onset, in bands of 5 years or wider",
    "sex": "sex (FHIR AdministrativeGender) or *",
    "region": "UN M49 sub-region of the patient's country, or continent, or *",
    "period": "quarter of submission, or year, or 5 years, or *",
    "network": "the expert network the case was put to, or *",
    "diagnosis": "main ORPHA / ICD-10 diagnosis, or its disease group, or *",
    "phenotypes": "observed HPO terms, generalised up the HPO hierarchy as far as needed",
    "status": "the case's lifecycle status",
    "urgency": "routine, urgent or emergency",
    "weeks_to_outcome": "weeks from submission to the signed outcome (empty before it)",
}

IDENTIFYING_COLUMNS = frozenset(
    {"age_band", "onset_band", "sex", "region", "period", "network", "diagnosis", "phenotypes"}
)
MEASURE_COLUMNS = frozenset(COHORT_COLUMNS) - IDENTIFYING_COLUMNS


class CohortFormat(StrEnum):
    JSON = "json"
    PARQUET = "parquet"


def _columns(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValidationError(where, "must be a list of column names")
    unknown = [v for v in value if v not in COHORT_COLUMNS]
    if unknown:
        known = ", ".join(COHORT_COLUMNS)
        raise ValidationError(where, f"unknown column {unknown[0]!r}; known columns: {known}")
    if len(set(value)) != len(value):
        raise ValidationError(where, "lists a column twice")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class CohortRequest:
    """What a data scientist asks for; checked on construction.

    ``fields`` (default: every column) are exported; ``quasi_identifiers``
    default to the identifying ones among them and may add measure columns,
    never leave an identifying exported column out. ``max_suppression`` is
    the share of cases that may be dropped to reach ``k``; if more would be,
    the export is refused rather than shrunk silently.
    """

    k: int = DEFAULT_K
    fields: tuple[str, ...] | None = None
    quasi_identifiers: tuple[str, ...] | None = None
    max_suppression: float = DEFAULT_MAX_SUPPRESSION
    format: CohortFormat = CohortFormat.JSON

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int):
            raise ValidationError("k", "must be a whole number")
        if self.k < MIN_K:
            raise ValidationError("k", f"must be at least {MIN_K} (a class of one is a person)")
        if self.k > MAX_K:
            raise ValidationError("k", f"must be at most {MAX_K}")
        fields = tuple(COHORT_COLUMNS) if self.fields is None else _columns(self.fields, "fields")
        if not fields:
            raise ValidationError("fields", "must name at least one column")
        object.__setattr__(self, "fields", fields)
        identifying = tuple(f for f in fields if f in IDENTIFYING_COLUMNS)
        if self.quasi_identifiers is None:
            qis = identifying
        else:
            qis = _columns(self.quasi_identifiers, "quasi_identifiers")
            missing = [f for f in identifying if f not in qis]
            if missing:
                raise ValidationError(
                    "quasi_identifiers",
                    f"{missing[0]} is exported and describes the patient: "
                    "it must be a quasi-identifier",
                )
            outside = [q for q in qis if q not in fields]
            if outside:
                raise ValidationError(
                    "quasi_identifiers", f"{outside[0]} is not among the exported fields"
                )
        object.__setattr__(self, "quasi_identifiers", qis)
        if isinstance(self.max_suppression, bool) or not isinstance(
            self.max_suppression, int | float
        ):
            raise ValidationError("max_suppression", "must be a number from 0 to 1")
        if not 0 <= self.max_suppression <= 1:
            raise ValidationError("max_suppression", "must be from 0 to 1")
        try:
            object.__setattr__(self, "format", CohortFormat(self.format))
        except ValueError:
            raise ValidationError("format", "must be json or parquet") from None


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """One case as the analyses see it (decrypted inside the store service only)."""

    id: str
    network: str
    status: CaseStatus
    created_at: datetime
    submitted_at: datetime | None = None
    outcome_at: datetime | None = None
    sex: str = "unknown"
    birth_year: int | None = None
    age_at_onset_years: int | None = None
    country: str | None = None
    #: observed HPO terms (excluded ones left out)
    phenotypes: tuple[str, ...] = ()
    orpha: tuple[str, ...] = ()
    icd10: tuple[str, ...] = ()
    #: confirmed diagnoses, ORPHA and ICD-10 codes
    confirmed: tuple[str, ...] = ()
    #: (HGNC symbol, HGVS) of each genetic finding
    genetics: tuple[tuple[str, str], ...] = ()
    urgency: str = "routine"
    pseudonym: str | None = None
    consent: frozenset[str] = field(default=frozenset())
    #: what the policy needs (members, consent); set for case-role searches
    ref: CaseRef | None = None
    #: the panel's treatment plan and its result at follow-up, once outcomes are recorded
    treatment: str | None = None
    followup: str | None = None

    @property
    def main_diagnosis(self) -> str | None:
        """A confirmed ORPHA code, else any ORPHA code, else an ICD-10 code."""
        for code in self.orpha:
            if code in self.confirmed:
                return code
        if self.orpha:
            return self.orpha[0]
        return self.icd10[0] if self.icd10 else None

    @property
    def age_at_submission(self) -> int | None:
        if self.birth_year is None:
            return None
        when = self.submitted_at or self.created_at
        return max(0, when.year - self.birth_year)
