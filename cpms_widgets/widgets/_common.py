"""What the case form and the consent widget share: styling, problem lists, error text."""

from __future__ import annotations

import html
from collections.abc import Iterable

import ipywidgets as w

from cpms_hub.domain import CpmsError, ValidationError
from cpms_widgets.forms import FieldProblem

__all__ = [
    "STYLE",
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
