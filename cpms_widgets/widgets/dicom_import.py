"""Import DICOM into a case from the user's server, with a progress bar and the report.

A path names a ``.dcm`` file, a folder of them or a ``.zip``.
:meth:`CaseStoreClient.import_dicom <cpms_widgets.client.CaseStoreClient.import_dicom>`
uploads it through the resumable chunked upload and asks the store to import it: the store
de-identifies every instance (PS3.15 Basic Profile) before anything is kept. The bar
follows the upload; the report then lists, per instance, whether it was stored, held or
refused, and which attributes were removed. Instances *held* because they may carry
burned-in annotations can be confirmed one by one (the user has looked and found none, or
accepts them) and imported again from the upload the store kept for that purpose; nothing
held passes silently. Keys and messages of the
report never carry patient data, so they are shown as they come.

The import runs in a thread so the notebook stays responsive while the bar moves;
:meth:`run` can also be called directly (tests, scripts).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from cpms_widgets.forms import FieldProblem

from ._common import (
    UploadProgress,
    classed,
    error_problems,
    label_width,
    problems_html,
    section,
    style_widget,
)

if TYPE_CHECKING:
    from cpms_widgets.client import CaseStoreClient

__all__ = ["DicomImportWidget", "report_html"]

#: at most this many instance rows in the report (the counts above it are complete)
MAX_ROWS = 200


def report_html(report: dict[str, Any]) -> str:
    """The import report as a short summary and a table of instances."""
    counts = (
        f"<b>{int(report.get('stored', 0))}</b> stored, "
        f"<b>{int(report.get('held', 0))}</b> held, "
        f"<b>{int(report.get('errors', 0))}</b> refused"
    )
    rows = []
    instances = report.get("instances", [])
    for inst in instances[:MAX_ROWS]:
        removed = inst.get("removed") or []
        rows.append(
            "<tr>"
            f"<td><code>{html.escape(str(inst.get('key', '')))}</code></td>"
            f'<td class="cpms-dicom-{html.escape(str(inst.get("status", "")))}">'
            f"{html.escape(str(inst.get('status', '')))}</td>"
            f'<td title="{html.escape(", ".join(map(str, removed)))}">{len(removed)}</td>'
            f"<td>{html.escape(str(inst.get('message') or ''))}</td>"
            "</tr>"
        )
    more = (
        f"<p class='cpms-note'>… and {len(instances) - MAX_ROWS} more instances.</p>"
        if len(instances) > MAX_ROWS
        else ""
    )
    table = (
        "<table class='cpms-dicom-report-table'><thead><tr><th>instance</th><th>status</th>"
        "<th>attributes removed</th><th>note</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        if rows
        else ""
    )
    return f"<div>{counts}</div>{table}{more}"


class DicomImportWidget(w.VBox):
    """A path, an *Import* button, a progress bar, and the import report.

    Stable attributes (and CSS classes): ``path`` (cpms-dicom-path), ``import_button``
    (cpms-dicom-import), ``progress`` (cpms-dicom-progress), ``progress_text``
    (cpms-dicom-progress-text), ``report`` (cpms-dicom-report), ``held`` (a
    SelectMultiple of held instances, cpms-dicom-held), ``confirm_button``
    (cpms-dicom-confirm), ``problems`` (cpms-dicom-problems). ``last_report`` is the
    last report as a dict; ``on_imported(callback)`` is called with it after each import.
    """

    def __init__(self, client: CaseStoreClient, case_id: str | None = None) -> None:
        self.client = client
        self.case_id = case_id
        self.path = classed(
            w.Text(description="DICOM", placeholder="a .dcm file, a folder or a .zip"),
            "cpms-dicom-path",
        )
        label_width(self.path)
        self.import_button = classed(
            w.Button(description="Import", icon="upload", button_style="primary"),
            "cpms-dicom-import",
        )
        self.upload = UploadProgress(
            "cpms-dicom-progress", text_class="cpms-dicom-progress-text", name="cpms-dicom-import"
        )
        self.progress, self.progress_text = self.upload.bar, self.upload.text
        self.report = classed(w.HTML(), "cpms-dicom-report")
        self.held = classed(
            w.SelectMultiple(options=[], description="Held", rows=4), "cpms-dicom-held"
        )
        label_width(self.held)
        self.confirm_button = classed(
            w.Button(
                description="Checked: import these",
                icon="check",
                tooltip="I have looked at the selected images: no identifying text is burned in",
            ),
            "cpms-dicom-confirm",
        )
        self.held_box = w.VBox(
            [
                w.HTML(
                    "<span class='cpms-note'>Held: these images may carry burned-in "
                    "annotations (text in the pixels). Select the ones you have checked "
                    "and import them again.</span>"
                ),
                w.HBox([self.held, self.confirm_button]),
            ],
            layout=w.Layout(display="none"),
        )
        self.problems = classed(w.HTML(), "cpms-dicom-problems", "cpms-problems")
        self.last_report: dict[str, Any] | None = None
        self._callbacks: list[Callable[[dict[str, Any]], None]] = []
        self.import_button.on_click(lambda _: self.upload.run_in_background(self.run))
        self.confirm_button.on_click(lambda _: self.upload.run_in_background(self.confirm_selected))
        super().__init__(
            [
                style_widget(),
                section("DICOM import"),
                w.HBox([self.path, self.import_button]),
                self.upload.box,
                self.problems,
                self.report,
                self.held_box,
            ]
        )
        self.add_class("cpms-dicom-importer")

    def set_case(self, case_id: str | None) -> None:
        self.case_id = case_id

    def on_imported(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self._callbacks.append(callback)

    def _progress(self, *args: Any) -> None:
        """``progress(sent, total)`` in bytes, as the chunked upload reports it (an optional
        third argument, or a dict with ``phase``/``done``/``total``, names the step)."""
        phase = "upload"
        if len(args) == 1 and isinstance(args[0], dict):
            d = args[0]
            done, total, phase = d.get("done", 0), d.get("total", 0), d.get("phase", phase)
        else:
            done, total = args[0], args[1]
            if len(args) > 2 and isinstance(args[2], str):
                phase = args[2]
        self.upload.update(done, total, phase=str(phase))

    def _check(self) -> list[FieldProblem]:
        if self.case_id is None:
            return [FieldProblem("case", "save the case before importing images")]
        raw = self.path.value.strip()
        if not raw:
            return [FieldProblem("path", "give the path of a .dcm file, a folder or a .zip")]
        path = Path(raw).expanduser()
        if not path.exists():
            return [FieldProblem("path", "no such file or folder")]
        if path.is_file() and path.stat().st_size == 0:
            return [FieldProblem("path", "the file is empty")]
        if path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
            return [FieldProblem("path", "the folder holds no files")]
        return []

    def run(self) -> dict[str, Any] | None:
        """Import the DICOM at ``path`` (blocking); the report, or None if refused."""
        problems = self._check()
        if problems:
            self.problems.value = problems_html(problems)
            return None
        path = Path(self.path.value.strip()).expanduser()
        return self._import(path, ())

    def confirm_selected(self) -> dict[str, Any] | None:
        """Import the held upload again (the store kept it), the selected images confirmed."""
        chosen = tuple(self.held.value)
        file_id = (self.last_report or {}).get("file_id")
        if not chosen or not file_id:
            self.problems.value = problems_html(
                [FieldProblem("held", "select the held images you have checked")]
            )
            return None
        return self._import(None, chosen, file_id=file_id)

    def _import(
        self, path: Path | None, confirmed: tuple[str, ...], *, file_id: str | None = None
    ) -> dict[str, Any] | None:
        self.problems.value = ""
        self.import_button.disabled = self.confirm_button.disabled = True
        self.upload.start()
        try:
            if file_id is not None:  # nothing to upload: the store still has the file
                report = self.client.import_dicom_file(
                    self.case_id, file_id, confirm_burned_in=confirmed
                )
            else:
                report = self.client.import_dicom(
                    self.case_id, path, confirm_burned_in=confirmed, progress=self._progress
                )
        except Exception as exc:  # noqa: BLE001 - every refusal is shown by field
            self.problems.value = problems_html(error_problems(exc))
            return None
        finally:
            self.import_button.disabled = self.confirm_button.disabled = False
        self.last_report = report
        self.upload.finish()
        self.report.value = report_html(report)
        held = [i["key"] for i in report.get("instances", []) if i.get("status") == "held"]
        self.held.options = held
        self.held_box.layout.display = "" if held else "none"
        ok = f"Imported {int(report.get('stored', 0))} instances."
        self.problems.value = problems_html([], ok=ok)
        for callback in self._callbacks:
            callback(report)
        return report

    def wait(self, timeout: float | None = None) -> None:
        """Wait for an import started by a button."""
        self.upload.wait(timeout)
