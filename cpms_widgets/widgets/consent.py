"""``ConsentWidget``: the patient's consent for one case, at a glance and editable.

A thin view over :class:`ConsentFormModel` and :func:`consent_summary`: it
shows what is granted, what was withdrawn and why submission is blocked;
records a new consent (the signed form is uploaded first, with a progress
bar, then the consent points at it); and withdraws a scope with its reason.

The signed form is either a file already in the user's server (``form_path``,
e.g. a scan uploaded to JupyterLab) or a small file picked with the upload
button, which is written to a private temporary folder, sent to the store the
same way and then deleted from the server.
"""

from __future__ import annotations

import html
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from cpms_hub.domain import ConsentScope
from cpms_widgets.forms import ConsentFormModel, FieldProblem, consent_summary
from cpms_widgets.forms.consent_form import SCOPE_LABELS

from ._common import (
    classed,
    error_problems,
    label_width,
    problems_html,
    section,
    split_reason,
    style_widget,
)

if TYPE_CHECKING:
    from cpms_widgets.client import CaseStoreClient

__all__ = ["ConsentWidget", "summary_html"]

#: the signed form is a small document; bigger files belong in the case's files
MAX_FORM_UPLOAD = 20 * 1024 * 1024
_ACCEPT = ".pdf,.png,.jpg,.jpeg,.tif,.tiff"


def summary_html(lines: list[str]) -> str:
    """The lines of :func:`consent_summary`, styled by what they say."""
    items = []
    for line in lines:
        if line.startswith("✔"):
            css = "cpms-granted"
        elif line.startswith("✘"):
            css = "cpms-withdrawn"
        elif line.startswith("Submission blocked"):
            css = "cpms-blocked"
        else:
            css = "cpms-missing"
        items.append(f'<li class="{css}">{html.escape(line)}</li>')
    return "<ul>" + "".join(items) + "</ul>"


def _scope_class(scope: ConsentScope) -> str:
    return f"cpms-scope-{scope.value}"


class ConsentWidget(w.VBox):
    """Consent of the patient of ``case_id`` (which may be set later with :meth:`set_case`).

    Inner widgets (attribute → CSS class): ``state_html`` (cpms-consent-state),
    ``scope_panel`` / ``scope_registries`` / ``scope_research`` (also in
    ``scope_boxes``; cpms-scope-<scope>), ``form_version``, ``language``,
    ``signed_on`` (cpms-signed-on), ``form_path``, ``form_upload``,
    ``progress`` (cpms-upload-progress), ``record_button``
    (cpms-record-consent), ``withdraw_scope``, ``withdraw_reason``,
    ``withdraw_button`` (cpms-withdraw) and ``message`` (cpms-consent-problems;
    the same list is in :attr:`last_problems`).
    """

    def __init__(self, client: CaseStoreClient | None, case_id: str | None = None) -> None:
        self.client = client
        self.case_id = case_id
        self.state: dict[str, Any] | None = None
        self.last_problems: list[FieldProblem] = []
        self._on_change: list[Callable[[dict[str, Any]], None]] = []

        self.state_html = classed(w.HTML(), "cpms-consent-state")

        self.scope_boxes: dict[ConsentScope, w.Checkbox] = {}
        for scope, label in SCOPE_LABELS.items():
            box = classed(
                w.Checkbox(description=label, value=False, indent=False), _scope_class(scope)
            )
            box.layout = w.Layout(width="auto")
            self.scope_boxes[scope] = box
        self.scope_panel = self.scope_boxes[ConsentScope.PANEL_DISCUSSION]
        self.scope_registries = self.scope_boxes[ConsentScope.REGISTRIES]
        self.scope_research = self.scope_boxes[ConsentScope.RESEARCH_CONTACT]

        self.form_version = classed(
            w.Text(description="Form version", placeholder="e.g. ERN-consent-2024-v2"),
            "cpms-form-version",
        )
        self.language = classed(
            w.Text(description="Language", value="en", placeholder="fr or fr-BE"),
            "cpms-language",
        )
        self.signed_on = classed(w.DatePicker(description="Signed on"), "cpms-signed-on")
        self.form_path = classed(
            w.Text(
                description="Signed form",
                placeholder="path of the scan in your server, e.g. scans/consent.pdf",
                layout=w.Layout(width="460px"),
            ),
            "cpms-form-path",
        )
        self.form_upload = classed(
            w.FileUpload(
                accept=_ACCEPT, multiple=False, description="or pick a file", icon="upload"
            ),
            "cpms-form-upload",
        )
        self.progress = classed(
            w.IntProgress(value=0, min=0, max=1, description="Upload"), "cpms-upload-progress"
        )
        self.record_button = classed(
            w.Button(description="Record consent", icon="check", button_style="primary"),
            "cpms-record-consent",
        )
        self.message = classed(w.HTML(), "cpms-consent-problems", "cpms-problems")

        self.withdraw_scope = classed(
            w.Dropdown(
                description="Scope",
                options=[(label, scope.value) for scope, label in SCOPE_LABELS.items()],
                value=ConsentScope.PANEL_DISCUSSION.value,
                layout=w.Layout(width="460px"),
            ),
            "cpms-withdraw-scope",
        )
        self.withdraw_reason = classed(
            w.Text(description="Reason", placeholder="as the patient gave it"),
            "cpms-withdraw-reason",
        )
        self.withdraw_button = classed(
            w.Button(description="Withdraw", icon="ban", button_style="danger"),
            "cpms-withdraw",
        )

        self.record_button.on_click(lambda _: self.record())
        self.withdraw_button.on_click(lambda _: self.withdraw())

        super().__init__(
            children=[
                style_widget(),
                section("Consent of the patient"),
                self.state_html,
                section("Record a signed consent form"),
                *self.scope_boxes.values(),
                w.HBox([self.form_version, self.language]),
                self.signed_on,
                w.HBox([self.form_path, self.form_upload]),
                w.HBox([self.record_button, self.progress]),
                section("Withdraw a scope"),
                w.HBox([self.withdraw_scope, self.withdraw_reason]),
                self.withdraw_button,
                self.message,
            ]
        )
        classed(self, "cpms-consent")
        label_width(
            self.form_version,
            self.language,
            self.signed_on,
            self.form_path,
            self.progress,
            self.withdraw_scope,
            self.withdraw_reason,
        )
        self.refresh()

    # -- the case ----------------------------------------------------------------

    def set_case(self, case_id: str | None) -> None:
        """Follow another case (e.g. the one a :class:`CaseForm` has just saved)."""
        if case_id != self.case_id:
            self.case_id = case_id
            self.refresh()

    def on_change(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(state)`` after each recording or withdrawal."""
        self._on_change.append(callback)

    def refresh(self) -> dict[str, Any] | None:
        """Read the consent state from the store and show it."""
        ready = self.client is not None and self.case_id is not None
        self.record_button.disabled = not ready
        self.withdraw_button.disabled = not ready
        if self.client is None:
            self.state = None
            self.state_html.value = "<i>Not connected to the case store.</i>"
            return None
        if self.case_id is None:
            self.state = None
            self.state_html.value = (
                "<i>Save the case first: consent is recorded on a saved case.</i>"
            )
            return None
        try:
            self.state = self.client.consents(self.case_id)
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            self.state = None
            self.state_html.value = problems_html(error_problems(exc))
            return None
        self.state_html.value = summary_html(consent_summary(self.state))
        return self.state

    @property
    def lines(self) -> list[str]:
        """The state at a glance, as text (what :attr:`state_html` shows)."""
        return consent_summary(self.state) if self.state is not None else []

    # -- recording ---------------------------------------------------------------

    def _progress(self, sent: int, total: int) -> None:
        self.progress.max = max(total, 1)
        self.progress.value = min(sent, self.progress.max)
        self.progress.bar_style = "success" if sent >= total else "info"

    def _picked_file(self, folder: Path) -> tuple[str | None, list[FieldProblem]]:
        """The file picked with the upload button, written into ``folder``."""
        if not self.form_upload.value:
            return None, []
        picked = self.form_upload.value[0]
        if int(picked["size"]) > MAX_FORM_UPLOAD:
            limit = MAX_FORM_UPLOAD // (1024 * 1024)
            return None, [FieldProblem("form", f"a signed form is at most {limit} MB")]
        name = Path(str(picked["name"])).name or "consent-form"
        target = folder / name
        target.write_bytes(bytes(picked["content"]))
        return str(target), []

    def model(self, form_path: str | None = None) -> ConsentFormModel:
        """What the widgets say, as a :class:`ConsentFormModel`."""
        return ConsentFormModel(
            scopes={s for s, box in self.scope_boxes.items() if box.value},
            form_version=self.form_version.value.strip(),
            language=self.language.value.strip(),
            signed_on=self.signed_on.value,
            form_path=form_path if form_path is not None else self.form_path.value.strip(),
        )

    def record(self) -> Any:
        """Upload the signed form, record the consent, show the new state."""
        if self.client is None or self.case_id is None:
            self._show([FieldProblem("consent", "save the case first")])
            return None
        folder = Path(tempfile.mkdtemp(prefix="cpms-consent-"))
        try:
            picked, problems = self._picked_file(folder)
            if problems:
                self._show(problems)
                return None
            model = self.model(picked)
            if picked is None and model.form_path:
                model.form_path = str(Path(model.form_path).expanduser())
            local = [split_reason(p) for p in model.validate()]
            if local:
                self._show(local)
                return None
            self.progress.value = 0
            self.progress.bar_style = "info"
            consent = model.record(self.client, self.case_id, progress=self._progress)
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            self._show(error_problems(exc))
            self.refresh()
            return None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if picked is not None:
            self.form_upload.value = ()
        scopes = ", ".join(sorted(s.value for s in consent.scopes))
        self._show([], ok=f"Consent recorded ({scopes}).")
        self._changed()
        return consent

    # -- withdrawing -------------------------------------------------------------

    def withdraw(self) -> Any:
        """Withdraw the chosen scope from the latest consent that grants it."""
        if self.client is None or self.case_id is None:
            self._show([FieldProblem("consent", "save the case first")])
            return None
        scope = ConsentScope(self.withdraw_scope.value)
        try:
            state = self.client.consents(self.case_id)
            granting = [c for c in state["consents"] if scope in c.active_scopes()]
            if not granting:
                self._show([FieldProblem("scope", f"{scope.value} is not granted at present")])
                return None
            latest = max(granting, key=lambda c: c.recorded_at)
            consent = self.client.withdraw_consent(
                self.case_id, latest.id, scope.value, self.withdraw_reason.value.strip()
            )
        except Exception as exc:  # noqa: BLE001
            self._show(error_problems(exc))
            return None
        self.withdraw_reason.value = ""
        self._show([], ok=f"{SCOPE_LABELS[scope]}: withdrawn.")
        self._changed()
        return consent

    # -- showing -----------------------------------------------------------------

    def _changed(self) -> None:
        state = self.refresh()
        if state is not None:
            for cb in self._on_change:
                try:
                    cb(state)
                except Exception as exc:  # noqa: BLE001 - a listener must not break the widget
                    self._show(error_problems(exc))

    def _show(self, problems: list[FieldProblem], ok: str = "") -> None:
        self.last_problems = list(problems)
        self.message.value = problems_html(problems, ok=ok)
