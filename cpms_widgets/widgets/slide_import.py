"""Import a whole-slide image into a case, with a live progress bar and the import report.

The slide comes from the user's own server, by path (a file uploaded to JupyterLab's file
browser or copied from the scanner's share). It travels like any attachment, in resumable
8 MiB chunks over HTTP (:meth:`CaseStoreClient.import_slide
<cpms_widgets.client.CaseStoreClient.import_slide>`), so a multi-GB slide never meets the
widget channel's message limit; then the store de-identifies it. The widget shows what the
de-identification removed (names of images and header fields, never their values) and the
slides the case already holds. The upload runs in a thread so the notebook stays
responsive; :meth:`import_` can also be called directly (tests, scripts).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from cpms_widgets.forms import FieldProblem

from ._common import (
    UploadProgress,
    classed,
    error_problems,
    human_size,
    label_width,
    problems_html,
    section,
    style_widget,
)

if TYPE_CHECKING:
    from cpms_widgets.client import CaseStoreClient

__all__ = ["SlideImportWidget"]


def _report_html(slide: dict[str, Any]) -> str:
    report = slide["report"]
    removed = ", ".join(report["removed_images"]) or "none"
    fields = ", ".join(report["removed_fields"]) or "none"
    kept = ", ".join(report["kept_images"]) or "none"
    return (
        f"<div class='cpms-slide-report'><b>Slide imported</b> "
        f"({slide['width']} × {slide['height']} px)<ul>"
        f"<li>images removed: {html.escape(removed)}</li>"
        f"<li>header fields removed: {html.escape(fields)}</li>"
        f"<li>images kept: {html.escape(kept)}</li></ul></div>"
    )


class SlideImportWidget(w.VBox):
    """Slides of one case: the list, and a path to import with its progress and report.

    Stable attributes (and CSS classes): ``path`` (cpms-slide-path), ``import_button``
    (cpms-slide-import), ``progress`` (cpms-slide-progress), ``progress_text``,
    ``report`` (cpms-slide-report-box), ``slides`` (cpms-slide-list), ``problems``
    (cpms-slide-problems). ``last_slide`` holds the store's answer for the last import.
    """

    def __init__(self, client: CaseStoreClient, case_id: str | None = None) -> None:
        self.client = client
        self.case_id = case_id
        self.last_slide: dict[str, Any] | None = None
        self.path = classed(
            w.Text(description="Slide", placeholder="e.g. slides/biopsy-17.svs"),
            "cpms-slide-path",
        )
        label_width(self.path)
        self.import_button = classed(
            w.Button(description="Import", icon="upload", button_style="primary"),
            "cpms-slide-import",
        )
        self.upload = UploadProgress("cpms-slide-progress", name="cpms-slide-import")
        self.progress, self.progress_text = self.upload.bar, self.upload.text
        self.report = classed(w.HTML(), "cpms-slide-report-box")
        self.slides = classed(w.HTML(), "cpms-slide-list")
        self.problems = classed(w.HTML(), "cpms-slide-problems", "cpms-problems")
        self.import_button.on_click(lambda _: self.upload.run_in_background(self.import_))
        super().__init__(
            [
                style_widget(),
                section("Whole-slide images"),
                self.slides,
                w.HBox([self.path, self.import_button]),
                self.upload.box,
                self.report,
                self.problems,
            ]
        )
        self.add_class("cpms-slide-importer")
        self.refresh()

    def set_case(self, case_id: str | None) -> None:
        self.case_id = case_id
        self.refresh()

    def refresh(self) -> list[dict[str, Any]]:
        if self.case_id is None:
            self.slides.value = "<i>Save the case first: slides attach to a saved draft.</i>"
            return []
        found = self.client.list_slides(self.case_id)
        rows = "".join(
            f"<li>{html.escape(s['id'][:8])}… — {s['width']} × {s['height']} px"
            f"{', ' + format(s['mpp'], '.3f') + ' µm/px' if s.get('mpp') else ''}</li>"
            for s in found
        )
        self.slides.value = f"<ul>{rows}</ul>" if rows else "<i>No slides yet.</i>"
        return found

    def _progress(self, sent: int, total: int) -> None:
        self.upload.update(sent, total, when_sent="de-identifying…")

    def _check(self) -> list[FieldProblem]:
        if self.case_id is None:
            return [FieldProblem("case", "save the case before importing slides")]
        raw = self.path.value.strip()
        if not raw:
            return [FieldProblem("slide", "give the path of a slide file in your server")]
        path = Path(raw).expanduser()
        if path.is_dir():
            return [FieldProblem("slide", "is a folder: give the slide file itself")]
        if not path.is_file():
            return [FieldProblem("slide", "no such file")]
        if path.stat().st_size == 0:
            return [FieldProblem("slide", "the file is empty")]
        return []

    def import_(self) -> dict[str, Any] | None:
        """Upload and import the slide at ``path`` (blocking); None if refused."""
        problems = self._check()
        if problems:
            self.problems.value = problems_html(problems)
            return None
        path = Path(self.path.value.strip()).expanduser()
        self.problems.value = ""
        self.report.value = ""
        self.import_button.disabled = True
        self.upload.start()
        try:
            slide = self.client.import_slide(self.case_id, path, progress=self._progress)
        except Exception as exc:  # noqa: BLE001 - every refusal is shown by field
            self.problems.value = problems_html(error_problems(exc))
            self.progress_text.value = ""
            return None
        finally:
            self.import_button.disabled = False
        self.last_slide = slide
        self.progress_text.value = f"{human_size(path.stat().st_size)} sent and de-identified"
        self.report.value = _report_html(slide)
        self.path.value = ""
        self.refresh()
        return slide

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background import started by the button."""
        self.upload.wait(timeout)
