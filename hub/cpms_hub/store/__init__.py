"""The case store: SQLAlchemy models, migrations, encryption, blobs and the audit trail.

This package is the only place that encrypts or decrypts patient data. Open it
through :func:`cpms_hub.state.open_state`.
"""

from .audit import AuditTrail, ChainReport, verify_chain
from .blobs import LocalBlobBackend
from .cases import AuditContext, CaseStore
from .database import make_engine, make_session_factory, migrate, session_scope
from .keys import DataKeys

__all__ = [
    "AuditContext",
    "AuditTrail",
    "CaseStore",
    "ChainReport",
    "DataKeys",
    "LocalBlobBackend",
    "make_engine",
    "make_session_factory",
    "migrate",
    "session_scope",
    "verify_chain",
]

# registers SlideRow, DicomInstanceRow and AnnotationRow on Base (imported last: they
# build on the above; annotations refer to the slides table)
from . import annotations as annotations  # noqa: E402
from . import dicom as dicom  # noqa: E402
from . import slides as slides  # noqa: E402
