"""ipywidgets views over :mod:`cpms_widgets.forms`, for clinicians' notebooks.

``CaseForm`` fills, saves and submits a case; ``ConsentWidget`` shows and
records the patient's consent; ``AttachmentsWidget`` attaches files of any
size with a progress bar; ``DicomImportWidget`` imports DICOM with a progress bar
and the de-identification report. All talk to the store only through the
user's own :class:`cpms_widgets.CaseStoreClient`.
"""

from .attachments import AttachmentsWidget
from .case_form import CaseForm
from .consent import ConsentWidget
from .dicom_import import DicomImportWidget

__all__ = ["AttachmentsWidget", "CaseForm", "ConsentWidget", "DicomImportWidget"]
