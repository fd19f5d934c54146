"""What the widgets share: styling, problem lists, error text, and the upload progress.

:class:`UploadProgress` is the progress bar and its text (sent, total, rate) of the
importers and the attachments, plus the one background thread that runs a transfer while
the notebook stays responsive.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import ipywidgets as w

from cpms_hub.domain import CpmsError, ValidationError
from cpms_widgets.forms import FieldProblem

__all__ = [
    "STYLE",
    "UploadProgress",
    "classed",
    "label_width",
    "error_problems",
    "human_size",
    "problems_html",
    "section",
    "split_reason",
    "style_widget",
]

#: one small stylesheet, shipped inside each top-level widget (no extension needed)
STYLE = """
<style>
.cpms-form, .cpms-consent { max-width: 960px; }
.cpms-section-title { margin-top: 10px; }
.cpms-section-title h4 { margin: 4px 0; color: #1a4f7a; }
.cpms-chip-row { border: 1px solid #c8d6e5; border-radius: 12px; padding: 0 0 0 8px;
                 margin: 2px 0; background: #f3f7fb; width: fit-content; }
.cpms-status { font-size: 1.05em; }
.cpms-status-value { font-weight: bold; padding: 1px 8px; border-radius: 8px;
                     background: #e8eef5; }
.cpms-status-value.cpms-is-submitted { background: #d9f2dc; color: #1b5e20; }
.cpms-status-value.cpms-is-draft { background: #fff4d6; color: #7a5200; }
.cpms-problems ul { margin: 4px 0; padding-left: 20px; color: #a01c1c; }
.cpms-problems .cpms-ok { color: #1b5e20; }
.cpms-note { color: #555; font-size: 0.9em; }
.cpms-hgvs-check .cpms-good { color: #1b5e20; }
.cpms-hgvs-check .cpms-bad { color: #a01c1c; }
.cpms-consent-state ul { list-style: none; padding-left: 4px; margin: 4px 0; }
.cpms-consent-state .cpms-granted { color: #1b5e20; }
.cpms-consent-state .cpms-withdrawn { color: #a01c1c; }
.cpms-consent-state .cpms-missing { color: #666; }
.cpms-consent-state .cpms-blocked { color: #a01c1c; font-weight: bold; }
</style>
"""


def style_widget() -> w.HTML:
    return w.HTML(STYLE)


def classed(widget: w.Widget, *classes: str) -> w.Widget:
    """``widget`` with CSS classes added (for styling and for Playwright)."""
    for c in classes:
        widget.add_class(c)
    return widget


#: room for the longest label ("Form version", "Signed form") without cutting it
LABEL_WIDTH = "110px"


def label_width(*widgets: w.Widget) -> None:
    """Give the widgets' descriptions the same width, so the labels line up uncut."""
    for widget in widgets:
        widget.style.description_width = LABEL_WIDTH


def section(title: str) -> w.HTML:
    return classed(w.HTML(f"<h4>{html.escape(title)}</h4>"), "cpms-section-title")


def split_reason(reason: str) -> FieldProblem:
    """``"field: why"`` → FieldProblem (a reason without a field goes under ``form``)."""
    field, sep, why = reason.partition(": ")
    if not sep or " " in field.strip():
        return FieldProblem("form", reason)
    return FieldProblem(field, why)


def error_problems(exc: Exception) -> list[FieldProblem]:
    """Every problem an error carries, by field."""
    if isinstance(exc, ValidationError):
        return [split_reason(r) for r in exc.reasons]
    if isinstance(exc, CpmsError):
        status = getattr(exc, "status", None)
        prefix = f"refused (HTTP {status}): " if status else "refused: "
        return [FieldProblem("store", prefix + r) for r in exc.reasons]
    return [FieldProblem("error", f"{type(exc).__name__}: {exc}")]


def problems_html(problems: Iterable[FieldProblem], *, ok: str = "") -> str:
    items = list(problems)
    if not items:
        return f'<span class="cpms-ok">{html.escape(ok)}</span>' if ok else ""
    lines = "".join(
        f"<li><b>{html.escape(p.field)}</b>: {html.escape(p.reason)}</li>" for p in items
    )
    return f"<ul>{lines}</ul>"


def human_size(n: float) -> str:
    """A byte count for people: ``512 B``, ``21.0 MB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


class UploadProgress:
    """A transfer's progress bar (``bar``, class ``css_class``) and text (``text``), and
    the background thread that runs it.

    ``update(sent, total)`` takes bytes, as the chunked upload reports them (``phase``
    names another step counted in items); ``when_sent`` is appended to the text once
    everything is sent (e.g. "de-identifying…"). :meth:`run_in_background` starts a
    callable in a thread unless one is still running; :meth:`wait` joins it.
    """

    def __init__(
        self, css_class: str, *, text_class: str | None = None, name: str = "cpms-upload"
    ) -> None:
        self.bar = classed(w.IntProgress(value=0, min=0, max=1, description="Upload"), css_class)
        label_width(self.bar)
        self.text = classed(w.HTML(), text_class) if text_class else w.HTML()
        self.box = w.HBox([self.bar, self.text])
        self._name = name
        self._started = time.monotonic()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """A new transfer: the bar empties and the rate counts from now."""
        self._started = time.monotonic()
        self.bar.value = 0
        self.bar.description = "Upload"

    def update(
        self, sent: float, total: float, *, phase: str = "upload", when_sent: str = ""
    ) -> None:
        self.bar.description = phase.capitalize()[:12]
        self.bar.max = max(int(total), 1)
        self.bar.value = min(int(sent), self.bar.max)
        if phase.lower() != "upload":
            self.text.value = f"{int(sent)} of {int(total)}"
            return
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self.text.value = (
            f"{human_size(sent)} of {human_size(total)} ({human_size(sent / elapsed)}/s)"
        )
        if when_sent and sent >= total:
            self.text.value += f" — {when_sent}"

    def finish(self, text: str | None = None) -> None:
        """The bar full; ``text`` replaces the figures when given ("" clears them)."""
        self.bar.value = self.bar.max
        if text is not None:
            self.text.value = text

    def run_in_background(self, target: Callable[[], Any]) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=target, name=self._name, daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the transfer started in the background, if any."""
        if self._thread is not None:
            self._thread.join(timeout)
