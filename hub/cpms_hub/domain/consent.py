"""Consent as data: what the patient agreed to, when, and what they withdrew.

Scopes follow the ERN patient-consent model: sharing for care and panel
discussion (mandatory to submit a case), inclusion in network databases and
registries, and being contacted for research. A consent record is versioned
(form version and language), dated, recorded by a named person and backed by
the signed form (a PDF or image attached to the case). Withdrawing a scope is
recorded with its date and reason; from then on every use of that scope
stops (FHIR R4 ``Consent`` with ``provision.type = deny``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from .errors import ValidationError

__all__ = [
    "ConsentScope",
    "Consent",
    "Withdrawal",
    "ConsentState",
    "MANDATORY_SCOPES",
    "FORM_MEDIA_TYPES",
]


class ConsentScope(StrEnum):
    PANEL_DISCUSSION = "panel-discussion"
    REGISTRIES = "registries"
    RESEARCH_CONTACT = "research-contact"


MANDATORY_SCOPES = frozenset({ConsentScope.PANEL_DISCUSSION})
FORM_MEDIA_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/tiff"})

#: leading bytes of each accepted form type (PDF 1.x/2.0, PNG, JPEG/JFIF/Exif, TIFF 6.0)
FORM_MAGIC: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
}


def looks_like(head: bytes, media_type: str) -> bool:
    """Whether ``head`` (the first bytes of a file) starts like ``media_type``."""
    prefixes = FORM_MAGIC.get(media_type)
    return bool(prefixes) and head.startswith(prefixes)


@dataclass(frozen=True, slots=True)
class Withdrawal:
    scope: ConsentScope
    on: date
    reason: str
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class Consent:
    """One signed consent form and what became of its scopes."""

    id: str
    case_id: str
    scopes: frozenset[ConsentScope]
    form_version: str
    language: str
    signed_on: date
    recorded_by: str
    recorded_at: datetime
    form_file_id: str | None = None
    withdrawals: tuple[Withdrawal, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.scopes:
            raise ValidationError("scopes", "at least one scope must be granted")
        if not self.form_version.strip():
            raise ValidationError("form_version", "is required")
        if len(self.language) not in (2, 5):
            raise ValidationError("language", "must be a language code such as fr or fr-BE")
        if self.signed_on > date.today():
            raise ValidationError("signed_on", "cannot be in the future")

    def active_scopes(self) -> frozenset[ConsentScope]:
        withdrawn = {w.scope for w in self.withdrawals}
        return frozenset(s for s in self.scopes if s not in withdrawn)


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The patient's consent for one case at a glance (latest record wins)."""

    granted: frozenset[ConsentScope]
    withdrawn: frozenset[ConsentScope]
    latest: Consent | None

    @classmethod
    def of(cls, consents: tuple[Consent, ...] | list[Consent]) -> ConsentState:
        if not consents:
            return cls(frozenset(), frozenset(), None)
        # the most recently recorded form replaces the ones before it
        latest = max(consents, key=lambda c: c.recorded_at)
        return cls(
            latest.active_scopes(),
            frozenset(w.scope for w in latest.withdrawals),
            latest,
        )

    def allows(self, scope: ConsentScope) -> bool:
        return scope in self.granted

    def blocking_submission(self) -> tuple[str, ...]:
        """Why this consent does not allow submission (empty when it does)."""
        if self.latest is None:
            return ("consent: no consent recorded",)
        missing = [s.value for s in MANDATORY_SCOPES if s not in self.granted]
        if missing:
            how = "withdrawn" if set(missing) & {s.value for s in self.withdrawn} else "not granted"
            return tuple(f"consent: {m} is {how}" for m in missing)
        if self.latest.form_file_id is None:
            return ("consent: the signed form is not attached",)
        return ()
