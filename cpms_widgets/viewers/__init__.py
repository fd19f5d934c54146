"""Viewers for notebooks: anywidget front ends bundled by ``make setup`` (esbuild).

The bundles live in ``cpms_widgets/viewers/static/`` (built, not in git).
:class:`SlideViewer` and :class:`DicomViewer` are imported on first use, so importing this
package does not load anywidget.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .dicom_viewer import DicomViewer
    from .slide_viewer import SlideViewer

__all__ = ["DicomViewer", "SlideViewer"]


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy attributes
    if name == "SlideViewer":
        from .slide_viewer import SlideViewer

        return SlideViewer
    if name == "DicomViewer":
        from .dicom_viewer import DicomViewer

        return DicomViewer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
