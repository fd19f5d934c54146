"""JSON forms of the clinical domain, shared by the service and the client.

``content_from_json`` is strict: unknown keys are refused with the path of
the key, and every value goes through the dataclasses' own checks, so the
same rules hold whether content arrives over HTTP, from a widget or from a
stored record.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from .clinical import CaseContent, Diagnosis, GeneticFinding, Patient, Phenotype
from .consent import Consent, ConsentScope, Withdrawal
from .errors import ValidationError

__all__ = ["content_to_json", "content_from_json", "consent_to_json", "consent_from_json"]

_PATIENT_KEYS = {"pseudonym", "sex", "birth_year", "age_at_onset_years", "country"}
_PHENOTYPE_KEYS = {"hpo_id", "label", "excluded", "onset"}
_DIAGNOSIS_KEYS = {"system", "code", "label", "confirmed"}
_GENETIC_KEYS = {"gene", "hgvs", "zygosity", "classification"}
_CONTENT_KEYS = {"patient", "phenotypes", "diagnoses", "genetics", "question", "urgency"}


def _only(d: Any, keys: set[str], where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ValidationError(where, "must be an object")
    extra = sorted(set(d) - keys)
    if extra:
        raise ValidationError(f"{where}.{extra[0]}" if where else extra[0], "unknown field")
    return d


def _list(d: dict[str, Any], key: str) -> list[Any]:
    value = d.get(key, [])
    if not isinstance(value, list):
        raise ValidationError(key, "must be a list")
    return value


def content_to_json(c: CaseContent) -> dict[str, Any]:
    p = c.patient
    return {
        "patient": None
        if p is None
        else {
            "pseudonym": p.pseudonym,
            "sex": p.sex.value,
            "birth_year": p.birth_year,
            "age_at_onset_years": p.age_at_onset_years,
            "country": p.country,
        },
        "phenotypes": [
            {"hpo_id": x.hpo_id, "label": x.label, "excluded": x.excluded, "onset": x.onset}
            for x in c.phenotypes
        ],
        "diagnoses": [
            {"system": x.system.value, "code": x.code, "label": x.label, "confirmed": x.confirmed}
            for x in c.diagnoses
        ],
        "genetics": [
            {
                "gene": x.gene,
                "hgvs": x.hgvs,
                "zygosity": x.zygosity.value,
                "classification": x.classification.value,
            }
            for x in c.genetics
        ],
        "question": c.question,
        "urgency": c.urgency.value,
    }


def content_from_json(d: Any) -> CaseContent:
    d = _only(d, _CONTENT_KEYS, "")
    patient = d.get("patient")
    if patient is not None:
        patient = Patient(**_only(patient, _PATIENT_KEYS, "patient"))
    try:
        return CaseContent(
            patient=patient,
            phenotypes=tuple(
                Phenotype(**_only(x, _PHENOTYPE_KEYS, "phenotypes")) for x in _list(d, "phenotypes")
            ),
            diagnoses=tuple(
                Diagnosis(**_only(x, _DIAGNOSIS_KEYS, "diagnoses")) for x in _list(d, "diagnoses")
            ),
            genetics=tuple(
                GeneticFinding(**_only(x, _GENETIC_KEYS, "genetics")) for x in _list(d, "genetics")
            ),
            question=d.get("question", ""),
            urgency=d.get("urgency", "routine"),
        )
    except TypeError as exc:  # a required key is missing; the message names it
        missing = re.findall(r"'(\w+)'", str(exc))
        reason = f"an entry lacks {missing[0]}" if missing else "an entry is incomplete"
        raise ValidationError("content", reason) from None


def consent_to_json(c: Consent) -> dict[str, Any]:
    return {
        "id": c.id,
        "case_id": c.case_id,
        "scopes": sorted(s.value for s in c.scopes),
        "active_scopes": sorted(s.value for s in c.active_scopes()),
        "form_version": c.form_version,
        "language": c.language,
        "signed_on": c.signed_on.isoformat(),
        "recorded_by": c.recorded_by,
        "recorded_at": c.recorded_at.isoformat(),
        "form_file_id": c.form_file_id,
        "withdrawals": [
            {
                "scope": w.scope.value,
                "on": w.on.isoformat(),
                "reason": w.reason,
                "recorded_by": w.recorded_by,
                "recorded_at": w.recorded_at.isoformat(),
            }
            for w in c.withdrawals
        ],
    }


def consent_from_json(d: dict[str, Any]) -> Consent:
    return Consent(
        id=d["id"],
        case_id=d["case_id"],
        scopes=frozenset(ConsentScope(s) for s in d["scopes"]),
        form_version=d["form_version"],
        language=d["language"],
        signed_on=date.fromisoformat(d["signed_on"]),
        recorded_by=d["recorded_by"],
        recorded_at=datetime.fromisoformat(d["recorded_at"]),
        form_file_id=d.get("form_file_id"),
        withdrawals=tuple(
            Withdrawal(
                scope=ConsentScope(w["scope"]),
                on=date.fromisoformat(w["on"]),
                reason=w["reason"],
                recorded_by=w["recorded_by"],
                recorded_at=datetime.fromisoformat(w["recorded_at"]),
            )
            for w in d.get("withdrawals", [])
        ),
    )
