"""The case form as data: a mutable draft that becomes a case and its content.

Local validation reuses the domain classes' own checks (formats, ranges,
duplicates) and collects *every* problem with its field instead of stopping
at the first; codes are then checked by the store when the draft is saved,
and completeness when it is submitted — the same messages, by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cpms_hub.domain import (
    Case,
    CaseContent,
    CaseDraft,
    Diagnosis,
    GeneticFinding,
    Patient,
    Phenotype,
    ValidationError,
)

if TYPE_CHECKING:
    from cpms_widgets.client import CaseStoreClient

__all__ = ["CaseFormModel", "FieldProblem"]


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def _problems_of(exc: ValidationError) -> list[FieldProblem]:
    out = []
    for r in exc.reasons:
        f, _, why = r.partition(": ")
        out.append(FieldProblem(f, why or r))
    return out


@dataclass
class CaseFormModel:
    """Everything the clinician types, before it is a case."""

    title: str = ""
    clinical_summary: str = ""
    pseudonym: str = ""
    sex: str = "unknown"
    birth_year: int | None = None
    age_at_onset_years: int | None = None
    country: str = ""
    phenotypes: list[Phenotype] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    genetics: list[GeneticFinding] = field(default_factory=list)
    question: str = ""
    urgency: str = "routine"
    network: str = ""
    case_id: str | None = None
    status: str = "new"

    # -- editing -------------------------------------------------------------

    def add_phenotype(
        self, hpo_id: str, label: str = "", *, excluded: bool = False, onset: str | None = None
    ) -> Phenotype:
        term = Phenotype(hpo_id=hpo_id, label=label, excluded=excluded, onset=onset or None)
        if any(p.hpo_id == term.hpo_id for p in self.phenotypes):
            raise ValidationError("phenotypes", f"{term.hpo_id} is already listed")
        self.phenotypes.append(term)
        return term

    def remove_phenotype(self, hpo_id: str) -> None:
        self.phenotypes = [p for p in self.phenotypes if p.hpo_id != hpo_id]

    def add_diagnosis(self, system: str, code: str, label: str = "", confirmed: bool = False):  # noqa: ANN201
        d = Diagnosis(system=system, code=code, label=label, confirmed=confirmed)
        if any((x.system, x.code) == (d.system, d.code) for x in self.diagnoses):
            raise ValidationError("diagnoses", f"{d.code} is already listed")
        self.diagnoses.append(d)
        return d

    def add_finding(self, gene: str, hgvs: str, zygosity: str, classification: str):  # noqa: ANN201
        g = GeneticFinding(gene=gene, hgvs=hgvs, zygosity=zygosity, classification=classification)
        self.genetics.append(g)
        return g

    # -- validation ----------------------------------------------------------

    def _patient(self) -> Patient | None:
        if not self.pseudonym.strip():
            return None
        return Patient(
            pseudonym=self.pseudonym.strip(),
            sex=self.sex,
            birth_year=self.birth_year,
            age_at_onset_years=self.age_at_onset_years,
            country=self.country.strip().upper() or None,
        )

    def validate(self, *, for_submission: bool = False) -> list[FieldProblem]:
        """Every problem the form can see by itself (codes are checked by the store)."""
        problems: list[FieldProblem] = []
        try:
            CaseDraft(self.title, self.clinical_summary)
        except ValidationError as exc:
            problems += _problems_of(exc)
        patient = None
        patient_ok = True
        try:
            patient = self._patient()
        except ValidationError as exc:
            patient_ok = False
            problems += _problems_of(exc)
        try:
            CaseContent(
                patient=patient,
                phenotypes=tuple(self.phenotypes),
                diagnoses=tuple(self.diagnoses),
                genetics=tuple(self.genetics),
                question=self.question,
                urgency=self.urgency,
            )
        except ValidationError as exc:
            problems += _problems_of(exc)
        if for_submission:
            if patient is None and patient_ok:
                problems.append(FieldProblem("patient.pseudonym", "is required"))
            elif self.birth_year is None and self.age_at_onset_years is None:
                problems.append(
                    FieldProblem("patient", "give the year of birth or the age at onset")
                )
            if not any(not p.excluded for p in self.phenotypes):
                problems.append(
                    FieldProblem("phenotypes", "at least one observed HPO term is needed")
                )
            if not self.question.strip():
                problems.append(FieldProblem("question", "say what you ask the panel"))
        return problems

    def to_content(self) -> CaseContent:
        problems = self.validate()
        if problems:
            raise ValidationError.of([str(p) for p in problems])
        return CaseContent(
            patient=self._patient(),
            phenotypes=tuple(self.phenotypes),
            diagnoses=tuple(self.diagnoses),
            genetics=tuple(self.genetics),
            question=self.question,
            urgency=self.urgency,
        )

    # -- the store -------------------------------------------------------------

    def save(self, client: CaseStoreClient) -> Case:
        """Create the case on first save, then keep its content up to date."""
        content = self.to_content()
        if self.case_id is None:
            # one request: if the store refuses the content, no empty draft is left behind
            case = client.create_case(
                self.title,
                self.clinical_summary,
                network=self.network or None,
                pseudonym=self.pseudonym.strip() or None,
                content=content,
            )
            self.case_id = case.id
        else:
            client.update_case(
                self.case_id, title=self.title, clinical_summary=self.clinical_summary
            )
            case = client.set_content(self.case_id, content)
        self.status = case.status.value
        return case

    def submit(self, client: CaseStoreClient) -> Case:
        """Save, then submit; a ValidationError lists every problem by field."""
        local = self.validate(for_submission=True)
        if local:
            raise ValidationError.of([str(p) for p in local])
        self.save(client)
        case = client.submit(self.case_id)
        self.status = case.status.value
        return case

    @classmethod
    def from_case(cls, case: Case) -> CaseFormModel:
        """A form filled from a stored case, to edit a draft later."""
        model = cls(
            title=case.title,
            clinical_summary=case.clinical_summary,
            network=case.network,
            case_id=case.id,
            status=case.status.value,
        )
        c = case.content
        if c is not None:
            if c.patient is not None:
                model.pseudonym = c.patient.pseudonym
                model.sex = c.patient.sex.value
                model.birth_year = c.patient.birth_year
                model.age_at_onset_years = c.patient.age_at_onset_years
                model.country = c.patient.country or ""
            model.phenotypes = list(c.phenotypes)
            model.diagnoses = list(c.diagnoses)
            model.genetics = list(c.genetics)
            model.question = c.question
            model.urgency = c.urgency.value
        return model
