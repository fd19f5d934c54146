"""ipywidgets views over :mod:`cpms_widgets.forms`, for clinicians' notebooks.

``CaseForm`` fills, saves and submits a case; ``ConsentWidget`` shows and
records the patient's consent; ``AttachmentsWidget`` attaches files of any
size with a progress bar; ``DicomImportWidget`` imports DICOM and
``SlideImportWidget`` a whole-slide image the same way, each showing what
de-identification removed. All talk to the store only through the user's own
:class:`cpms_widgets.CaseStoreClient`.
"""

from .attachments import AttachmentsWidget
from .case_form import CaseForm
from .consent import ConsentWidget
from .dicom_import import DicomImportWidget
from .slide_import import SlideImportWidget

__all__ = [
    "AttachmentsWidget",
    "CaseForm",
    "ConsentWidget",
    "DicomImportWidget",
    "SlideImportWidget",
]
