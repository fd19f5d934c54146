"""Cases: a pseudonymised patient's problem put to a panel of experts.

A case belongs to a clinician (its owner) at a hospital and is submitted to
one network's panel. Its title and clinical summary are patient data: the
store keeps them only encrypted. Later capabilities (consent, phenotypes,
panels, outcomes) extend this model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from .clinical import CaseContent
from .consent import ConsentScope
from .errors import ValidationError
from .roles import MemberRole

__all__ = [
    "CaseStatus",
    "Case",
    "CaseRef",
    "CaseMember",
    "CaseDraft",
    "CaseFile",
    "MAX_TITLE",
    "MAX_SUMMARY",
]

MAX_TITLE = 200
MAX_SUMMARY = 20_000


class CaseStatus(StrEnum):
    """Lifecycle of a case (draft → submitted → … → closed)."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    PANEL_ASSEMBLED = "panel-assembled"
    IN_DISCUSSION = "in-discussion"
    OUTCOME_DRAFTED = "outcome-drafted"
    OUTCOME_SIGNED = "outcome-signed"
    CLOSED = "closed"
    REOPENED = "reopened"


@dataclass(frozen=True, slots=True)
class CaseMember:
    """One person's part in one case."""

    user: str
    role: MemberRole
    added_at: datetime


@dataclass(frozen=True, slots=True)
class CaseDraft:
    """What a clinician supplies to create a case; validated on construction."""

    title: str
    clinical_summary: str = ""
    network: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title.strip():
            raise ValidationError("title", "must not be empty")
        if len(self.title) > MAX_TITLE:
            raise ValidationError("title", f"must be at most {MAX_TITLE} characters")
        if not isinstance(self.clinical_summary, str):
            raise ValidationError("clinical_summary", "must be text")
        if len(self.clinical_summary) > MAX_SUMMARY:
            raise ValidationError("clinical_summary", f"must be at most {MAX_SUMMARY} characters")
        if self.network is not None and (not isinstance(self.network, str) or not self.network):
            raise ValidationError("network", "must be a network name")


@dataclass(frozen=True, slots=True)
class CaseRef:
    """What the policy needs to know of a case: no clinical content."""

    id: str
    owner: str
    hospital: str
    network: str
    status: CaseStatus
    created_at: datetime
    updated_at: datetime
    members: tuple[CaseMember, ...] = field(default=())
    #: active scopes of the latest consent record (empty: none recorded)
    consent: frozenset[ConsentScope] = field(default=frozenset())
    #: scopes of that record the patient has withdrawn
    consent_withdrawn: frozenset[ConsentScope] = field(default=frozenset())

    def member_role(self, user: str) -> MemberRole | None:
        for m in self.members:
            if m.user == user:
                return m.role
        return None


@dataclass(frozen=True, slots=True)
class Case:
    """A case as its permitted readers see it, decrypted."""

    id: str
    owner: str
    hospital: str
    network: str
    status: CaseStatus
    title: str
    clinical_summary: str
    created_at: datetime
    updated_at: datetime
    members: tuple[CaseMember, ...] = field(default=())
    consent: frozenset[ConsentScope] = field(default=frozenset())
    consent_withdrawn: frozenset[ConsentScope] = field(default=frozenset())
    content: CaseContent | None = None

    @property
    def ref(self) -> CaseRef:
        return CaseRef(
            self.id,
            self.owner,
            self.hospital,
            self.network,
            self.status,
            self.created_at,
            self.updated_at,
            self.members,
            self.consent,
            self.consent_withdrawn,
        )

    def member_role(self, user: str) -> MemberRole | None:
        return self.ref.member_role(user)


@dataclass(frozen=True, slots=True)
class CaseFile:
    """A file attached to a case (kept encrypted; ``name`` may be patient data)."""

    id: str
    case_id: str
    name: str
    media_type: str
    size: int
    sha256: str
    created_by: str
    created_at: datetime
