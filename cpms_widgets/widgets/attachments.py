"""Attach reports, lab results and photos to a case, with a live progress bar.

Files come from the user's own server (anything uploaded to JupyterLab's file
browser, or produced by a notebook), by path: they travel to the store in
resumable 8 MiB chunks over HTTP, so the ~10 MB message limit of the widget
channel never applies and a 2 GB file works. The upload runs in a thread so
the notebook stays responsive while the bar moves; :meth:`attach` can also be
called directly (tests, scripts). DICOM studies and slides have importers of
their own that use the same upload path.
"""

from __future__ import annotations

import html
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

import ipywidgets as w

from cpms_hub.domain import CaseFile
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

__all__ = ["AttachmentsWidget"]


class AttachmentsWidget(w.VBox):
    """Files of one case: the list, and a path to attach with its progress.

    Stable attributes (and CSS classes): ``path`` (cpms-attach-path),
    ``attach_button`` (cpms-attach), ``progress`` (cpms-attach-progress),
    ``progress_text``, ``files`` (cpms-attach-files), ``problems``
    (cpms-attach-problems).
    """

    def __init__(self, client: CaseStoreClient, case_id: str | None = None) -> None:
        self.client = client
        self.case_id = case_id
        self.path = classed(
            w.Text(description="File", placeholder="e.g. reports/mri-2026-03.pdf"),
            "cpms-attach-path",
        )
        label_width(self.path)
        self.attach_button = classed(
            w.Button(description="Attach", icon="paperclip", button_style="primary"),
            "cpms-attach",
        )
        self.upload = UploadProgress("cpms-attach-progress", name="cpms-attach")
        self.progress, self.progress_text = self.upload.bar, self.upload.text
        self.files = classed(w.HTML(), "cpms-attach-files")
        self.problems = classed(w.HTML(), "cpms-attach-problems", "cpms-problems")
        self.attach_button.on_click(lambda _: self.upload.run_in_background(self.attach))
        super().__init__(
            [
                style_widget(),
                section("Attachments"),
                self.files,
                w.HBox([self.path, self.attach_button]),
                self.upload.box,
                self.problems,
            ]
        )
        self.add_class("cpms-attachments")
        self.refresh()

    def set_case(self, case_id: str | None) -> None:
        self.case_id = case_id
        self.refresh()

    def refresh(self) -> list[CaseFile]:
        if self.case_id is None:
            self.files.value = "<i>Save the case first: files attach to a saved draft.</i>"
            return []
        files = self.client.list_files(self.case_id)
        rows = "".join(
            f"<li>{html.escape(f.name)} — {html.escape(f.media_type)}, {human_size(f.size)}</li>"
            for f in files
        )
        self.files.value = f"<ul>{rows}</ul>" if rows else "<i>No files yet.</i>"
        return files

    def _check(self) -> list[FieldProblem]:
        if self.case_id is None:
            return [FieldProblem("case", "save the case before attaching files")]
        raw = self.path.value.strip()
        if not raw:
            return [FieldProblem("file", "give the path of a file in your server")]
        path = Path(raw).expanduser()
        if not path.is_file():
            return [FieldProblem("file", "no such file")]
        if path.stat().st_size == 0:
            return [FieldProblem("file", "the file is empty")]
        return []

    def attach(self) -> CaseFile | None:
        """Upload the file at ``path`` into the case (blocking); None if refused."""
        problems = self._check()
        if problems:
            self.problems.value = problems_html(problems)
            return None
        path = Path(self.path.value.strip()).expanduser()
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.problems.value = ""
        self.attach_button.disabled = True
        self.upload.start()
        try:
            f = self.client.upload(
                self.case_id, path, media_type=media_type, progress=self.upload.update
            )
        except Exception as exc:  # noqa: BLE001 - every refusal is shown by field
            self.problems.value = problems_html(error_problems(exc))
            return None
        finally:
            self.attach_button.disabled = False
        self.problems.value = problems_html([], ok=f"Attached {f.name} ({human_size(f.size)}).")
        self.path.value = ""
        self.refresh()
        return f

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background upload started by the button."""
        self.upload.wait(timeout)
