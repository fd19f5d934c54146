"""Follow-up: what became of the patient after the panel's signed recommendation.

The signed outcome recommends a treatment in free text and sets a follow-up
date (:class:`~cpms_hub.domain.review.OutcomeDraft`). Free text can never be
counted without leaking it, so at follow-up the case's clinician records two
coded values, and nothing else: which *category* of treatment the patient
followed (:class:`TreatmentCategory`, broad enough that a category is never a
fingerprint of one case) and the *result* (:class:`FollowUpResult`). These
are what the aggregate report "outcomes by treatment at follow-up" counts
(:mod:`cpms_hub.analysis.reports`).

One record per case: a later follow-up (after the case was reopened and its
outcome signed again, say) replaces the earlier one. The record is clinical
data: the store keeps it encrypted under the case's data key, and every read
and write is audited. It can be recorded only once a signed outcome exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from .errors import ValidationError

__all__ = ["TreatmentCategory", "FollowUpResult", "FollowUpDraft", "FollowUp"]


class TreatmentCategory(StrEnum):
    """The treatment the patient followed, generalised to a category."""

    #: medicines, including enzyme replacement and disease-modifying drugs
    MEDICINAL = "medicinal"
    #: gene therapy, cell therapy, stem-cell or organ transplantation
    GENE_CELL_TRANSPLANT = "gene-cell-or-transplant"
    #: surgery or an interventional procedure
    SURGICAL = "surgical"
    #: diet, metabolic management
    DIETARY = "dietary"
    #: physiotherapy, rehabilitation, supportive and palliative care
    SUPPORTIVE = "supportive"
    #: watchful waiting, surveillance, no specific treatment
    SURVEILLANCE = "surveillance"
    OTHER = "other"


class FollowUpResult(StrEnum):
    """The patient's course at follow-up, as the clinician judges it."""

    IMPROVED = "improved"
    STABLE = "stable"
    WORSENED = "worsened"
    DECEASED = "deceased"
    #: the patient could not be followed up
    LOST = "lost-to-follow-up"


def _choice(enum: type[StrEnum], value: object, name: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise ValidationError(name, f"must be one of {', '.join(e.value for e in enum)}") from None


@dataclass(frozen=True, slots=True)
class FollowUpDraft:
    """What the clinician records; checked on construction."""

    treatment: TreatmentCategory
    result: FollowUpResult

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "treatment", _choice(TreatmentCategory, self.treatment, "treatment")
        )
        object.__setattr__(self, "result", _choice(FollowUpResult, self.result, "result"))

    def to_json(self) -> dict[str, str]:
        return {"treatment": self.treatment.value, "result": self.result.value}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FollowUpDraft:
        return cls(treatment=d.get("treatment"), result=d.get("result"))


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The follow-up recorded for one case."""

    case_id: str
    draft: FollowUpDraft
    recorded_by: str
    recorded_at: datetime
