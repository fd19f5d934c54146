"""Request and response bodies of the store API (pydantic, unknown fields refused)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from cpms_hub.domain.cases import MAX_SUMMARY as MAX_SUMMARY_CHARS
from cpms_hub.domain.cases import MAX_TITLE as MAX_TITLE_CHARS

__all__ = [
    "CaseCreate",
    "CaseUpdate",
    "PseudonymLookup",
    "MemberOut",
    "CaseOut",
    "FileOut",
    "AccountOut",
    "MeOut",
    "AuditOut",
    "ErrorOut",
    "ContentIn",
    "ConsentIn",
    "WithdrawIn",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class CaseCreate(_In):
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)
    clinical_summary: str = Field(default="", max_length=MAX_SUMMARY_CHARS)
    network: str | None = Field(default=None, min_length=1, max_length=200)
    pseudonym: str | None = Field(default=None, min_length=1, max_length=128)
    content: ContentIn | None = None


class CaseUpdate(_In):
    title: str | None = Field(default=None, min_length=1, max_length=MAX_TITLE_CHARS)
    clinical_summary: str | None = Field(default=None, max_length=MAX_SUMMARY_CHARS)


class PseudonymLookup(_In):
    pseudonym: str = Field(min_length=1, max_length=128)


class MemberOut(BaseModel):
    user: str
    role: str
    added_at: datetime


class CaseOut(BaseModel):
    id: str
    owner: str
    hospital: str
    network: str
    status: str
    title: str
    clinical_summary: str
    created_at: datetime
    updated_at: datetime
    members: list[MemberOut]
    consent: dict[str, list[str]]
    content: dict | None = None


class FileOut(BaseModel):
    id: str
    case_id: str
    name: str
    media_type: str
    size: int
    sha256: str
    created_by: str
    created_at: datetime


class AccountOut(BaseModel):
    name: str
    email: str
    full_name: str
    hospital: str
    network: str
    roles: list[str]
    status: str
    mfa_enrolled: bool
    created_at: datetime


class MeOut(BaseModel):
    name: str
    roles: list[str]
    hospital: str
    network: str
    scopes: list[str]


class AuditOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    action: str
    case_id: str | None
    client: str
    outcome: str
    detail: str


class ErrorOut(BaseModel):
    status: int
    error: str
    reasons: list[str]


class PatientIn(_In):
    pseudonym: str = Field(min_length=1, max_length=128)
    sex: str = "unknown"
    birth_year: int | None = None
    age_at_onset_years: int | None = None
    country: str | None = None


class PhenotypeIn(_In):
    hpo_id: str
    label: str = ""
    excluded: bool = False
    onset: str | None = None


class DiagnosisIn(_In):
    system: str
    code: str
    label: str = ""
    confirmed: bool = False


class GeneticFindingIn(_In):
    gene: str
    hgvs: str
    zygosity: str = "unknown"
    classification: str = "uncertain-significance"


class ContentIn(_In):
    """Clinical content of a case; see :mod:`cpms_hub.domain.clinical` for the rules."""

    patient: PatientIn | None = None
    phenotypes: list[PhenotypeIn] = Field(default_factory=list, max_length=500)
    diagnoses: list[DiagnosisIn] = Field(default_factory=list, max_length=100)
    genetics: list[GeneticFindingIn] = Field(default_factory=list, max_length=100)
    question: str = Field(default="", max_length=5000)
    urgency: str = "routine"


class ConsentIn(_In):
    scopes: list[str] = Field(min_length=1, max_length=3)
    form_version: str = Field(min_length=1, max_length=50)
    language: str = Field(min_length=2, max_length=5)
    signed_on: date
    form_file_id: str | None = None


class WithdrawIn(_In):
    scope: str
    reason: str = Field(min_length=1, max_length=1000)
    on: date | None = None


CaseCreate.model_rebuild()
