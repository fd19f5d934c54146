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

# register the slide, DICOM, annotation and panel review tables on Base (imported last:
# they build on the modules above; annotations refer to the slides table)
from . import annotations as annotations  # noqa: E402
from . import dicom as dicom  # noqa: E402
from . import review_schema as review_schema  # noqa: E402
from . import slides as slides  # noqa: E402
