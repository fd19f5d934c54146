"""CPMS on the user side: the store client, forms and widgets for notebooks and Panel apps.

Nothing here holds a key, a database URL or a blob path: everything goes
through :class:`CaseStoreClient`, as the logged-in user, with their own token.

The widgets (:class:`CaseForm`, :class:`ConsentWidget`, :class:`AttachmentsWidget`,
:class:`DicomImportWidget`, :class:`SlideImportWidget`) and the :class:`DicomViewer` are
imported on first use, so importing the client does not load ipywidgets or anywidget.
"""

from typing import TYPE_CHECKING

from .client import CaseStoreClient, ClientSettings

if TYPE_CHECKING:
    from .viewers import DicomViewer
    from .widgets import (
        AttachmentsWidget,
        CaseForm,
        ConsentWidget,
        DicomImportWidget,
        SlideImportWidget,
    )

__all__ = [
    "AttachmentsWidget",
    "CaseForm",
    "CaseStoreClient",
    "ClientSettings",
    "ConsentWidget",
    "DicomImportWidget",
    "DicomViewer",
    "SlideImportWidget",
]

_LAZY = {
    "AttachmentsWidget",
    "CaseForm",
    "ConsentWidget",
    "DicomImportWidget",
    "SlideImportWidget",
}


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy attributes
    if name in _LAZY:
        from . import widgets

        return getattr(widgets, name)
    if name == "DicomViewer":
        from .viewers import DicomViewer

        return DicomViewer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
