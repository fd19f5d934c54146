"""Viewers for notebooks: anywidget front ends bundled by ``make setup`` (esbuild).

The bundles live in ``cpms_widgets/viewers/static/`` (built, not in git).
:class:`SlideViewer` is imported on first use, so importing this package does not load
anywidget.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .slide_viewer import SlideViewer

__all__ = ["SlideViewer"]


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy attributes
    if name == "SlideViewer":
        from .slide_viewer import SlideViewer

        return SlideViewer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
