"""The CPMS domain: frozen dataclasses and enums, standard library only.

Both sides of the trust boundary import this package: the hub side
(store, policy, service) and the user side (``cpms_widgets``), which turns
the service's JSON back into these objects.
"""

from .accounts import Account, AccountRequest, AccountStatus, validate_username
from .annotations import (
    MAX_COMMENT_CHARS,
    MAX_POLYGON_POINTS,
    AnnotationDraft,
    ShapeKind,
    SlideAnnotation,
)
from .audit import AuditEntry, AuditOutcome
from .cases import Case, CaseDraft, CaseFile, CaseMember, CaseRef, CaseStatus
from .clinical import (
    AcmgClass,
    CaseContent,
    Diagnosis,
    DiagnosisSystem,
    GeneticFinding,
    Patient,
    Phenotype,
    Sex,
    Urgency,
    Zygosity,
)
from .consent import Consent, ConsentScope, ConsentState, Withdrawal
from .errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    CpmsError,
    IntegrityError,
    KeyUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from .roles import MemberRole, Role

__all__ = [
    "MAX_COMMENT_CHARS",
    "MAX_POLYGON_POINTS",
    "Account",
    "AccountRequest",
    "AccountStatus",
    "AcmgClass",
    "AnnotationDraft",
    "AuditEntry",
    "AuditOutcome",
    "AuthenticationError",
    "Case",
    "CaseContent",
    "CaseDraft",
    "CaseFile",
    "CaseMember",
    "CaseRef",
    "CaseStatus",
    "ConfigurationError",
    "ConflictError",
    "Consent",
    "ConsentScope",
    "ConsentState",
    "CpmsError",
    "Diagnosis",
    "DiagnosisSystem",
    "GeneticFinding",
    "IntegrityError",
    "KeyUnavailableError",
    "MemberRole",
    "NotFoundError",
    "Patient",
    "PermissionDeniedError",
    "Phenotype",
    "Role",
    "Sex",
    "ShapeKind",
    "SlideAnnotation",
    "Urgency",
    "ValidationError",
    "Withdrawal",
    "Zygosity",
    "validate_username",
]
