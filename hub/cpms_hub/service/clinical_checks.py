"""What a case must satisfy: codes that exist, and everything a panel needs.

Two levels. :func:`vocabulary_problems` runs whenever content is saved: a
draft may be incomplete, but every code in it must exist in the ontologies
the hub ships (an obsolete HPO term names its replacement).
:func:`submission_problems` runs at submission and lists *every* missing or
wrong thing by field, so the clinician fixes them in one go.
"""

from __future__ import annotations

from cpms_hub.domain import (
    Case,
    CaseContent,
    CaseFile,
    Consent,
    ConsentState,
    DiagnosisSystem,
    ValidationError,
)

__all__ = ["vocabulary_problems", "submission_problems"]


def vocabulary_problems(content: CaseContent) -> list[str]:
    from cpms_hub import vocab

    problems: list[str] = []

    def attempt(fn, *args) -> None:  # noqa: ANN001
        try:
            fn(*args)
        except ValidationError as exc:
            problems.extend(exc.reasons)

    for p in content.phenotypes:
        attempt(vocab.hpo().check, p.hpo_id)
    for d in content.diagnoses:
        if d.system is DiagnosisSystem.ORPHA:
            attempt(vocab.orpha().check, d.code)
        else:
            attempt(vocab.check_icd10, d.code)
    for g in content.genetics:
        attempt(vocab.check_hgvs, g.hgvs)
    return problems


def submission_problems(case: Case, consents: list[Consent], files: list[CaseFile]) -> list[str]:
    problems: list[str] = []
    content = case.content
    if content is None:
        problems.append("content: the case has no clinical description yet")
        content = CaseContent()
    if content.patient is None:
        problems.append("patient: the pseudonymised patient is missing")
    elif content.patient.birth_year is None and content.patient.age_at_onset_years is None:
        problems.append("patient: give the year of birth or the age at onset")
    if not any(not p.excluded for p in content.phenotypes):
        problems.append("phenotypes: at least one observed HPO term is needed")
    if not content.question.strip():
        problems.append("question: say what you ask the panel")
    if not case.clinical_summary.strip():
        problems.append("clinical_summary: is empty")
    problems.extend(vocabulary_problems(content))
    problems.extend(ConsentState.of(consents).blocking_submission())
    return problems
