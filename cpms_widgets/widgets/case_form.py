"""``CaseForm``: the case form as ipywidgets, a thin view over :class:`CaseFormModel`.

Every rule lives in the model (and, for codes and completeness, in the
store): the widgets only copy what the clinician typed into the model, call
it, and show what it says. The inner widgets are attributes with stable names
(``form.pseudonym``, ``form.hpo_query``, ``form.save_button`` …) so tests can
drive the form without a browser, and each carries a ``cpms-…`` CSS class so
Playwright can find it in JupyterLab.

Vocabulary look-ups (HPO, Orphanet, ICD-10, HGVS) go to the store through the
user's own :class:`CaseStoreClient`; the search text travels in request bodies.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from cpms_hub.domain import (
    AcmgClass,
    Case,
    CpmsError,
    DiagnosisSystem,
    Sex,
    Urgency,
    ValidationError,
    Zygosity,
)
from cpms_hub.domain.clinical import ONSET_TERMS
from cpms_widgets.forms import CaseFormModel, FieldProblem

from ._common import (
    classed,
    error_problems,
    label_width,
    problems_html,
    section,
    style_widget,
)

if TYPE_CHECKING:
    from cpms_widgets.client import CaseStoreClient

__all__ = ["CaseForm", "hit_label"]

#: fewer characters than this and the search box does not ask the store
MIN_QUERY = 2
SEARCH_LIMIT = 10
NO_ONSET = ""

_STATUS_WORDS = {"new": "not saved yet"}


def hit_label(hit: dict[str, Any]) -> str:
    """``"HP:0001250 Seizure"``, plus the synonym that matched when it was one."""
    code = str(hit.get("id") or hit.get("code") or "")
    label = str(hit.get("label") or "")
    text = f"{code} {label}".strip()
    matched = str(hit.get("matched") or "")
    if matched and matched.casefold() not in (label.casefold(), code.casefold()):
        text += f" (synonym: {matched})"
    return text


def _int_or_none(text: str, field: str, problems: list[FieldProblem]) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        problems.append(FieldProblem(field, "must be a whole number"))
        return None
    return int(text)


class CaseForm(w.VBox):
    """The case form a clinician fills in a notebook: save a draft, then submit it.

    Inner widgets (attribute → CSS class): ``title`` (cpms-title), ``network``,
    ``pseudonym``, ``sex``, ``birth_year``, ``age_at_onset``, ``country``;
    ``hpo_query`` (cpms-hpo-query), ``hpo_hits`` (cpms-hpo-hits, values are HPO
    ids), ``hpo_presence``, ``hpo_onset``, ``add_hpo`` (cpms-add-hpo),
    ``hpo_list`` (rows cpms-hpo-row, each with ``remove_button``); ``dx_system``,
    ``dx_query``, ``dx_hits``, ``dx_confirmed``, ``add_dx``, ``dx_list``;
    ``gene``, ``hgvs``, ``hgvs_check`` (✔/✘ and the reason), ``zygosity``,
    ``classification`` (cpms-acmg), ``add_finding``, ``finding_list``;
    ``clinical_summary`` (cpms-summary), ``question``, ``urgency``;
    ``save_button`` (cpms-save), ``submit_button`` (cpms-submit), ``status``
    (cpms-status; the value carries ``data-status``) and ``problems``
    (cpms-problems; the same list is in :attr:`last_problems`).
    """

    def __init__(self, client: CaseStoreClient | None = None, case_id: str | None = None) -> None:
        self.client = client
        self.model = CaseFormModel()
        self._hpo_hits: dict[str, dict[str, Any]] = {}
        self._dx_hits: dict[str, dict[str, Any]] = {}
        self._hgvs_verdict: tuple[bool | None, str] = (None, "")
        self._on_save: list[Callable[[str], None]] = []
        self.last_problems: list[FieldProblem] = []

        self._build_case_and_patient()
        self._build_phenotypes()
        self._build_diagnoses()
        self._build_genetics()
        self._build_question_and_actions()

        super().__init__(
            children=[
                style_widget(),
                section("Case"),
                w.HBox([self.title, self.network]),
                section("Patient (pseudonymised)"),
                w.HBox([self.pseudonym, self.sex]),
                w.HBox([self.birth_year, self.age_at_onset, self.country]),
                section("Phenotype (HPO)"),
                w.HBox([self.hpo_query, self.hpo_note]),
                self.hpo_hits,
                w.HBox([self.hpo_presence, self.hpo_onset, self.add_hpo]),
                self.hpo_list,
                section("Diagnoses (Orphanet or ICD-10)"),
                w.HBox([self.dx_system, self.dx_query, self.dx_note]),
                self.dx_hits,
                w.HBox([self.dx_confirmed, self.add_dx]),
                self.dx_list,
                section("Genetic findings"),
                w.HBox([self.gene, self.hgvs]),
                self.hgvs_check,
                w.HBox([self.zygosity, self.classification, self.add_finding]),
                self.finding_list,
                section("Summary and question to the panel"),
                self.clinical_summary,
                self.question,
                self.urgency,
                w.HBox([self.save_button, self.submit_button]),
                self.status,
                self.problems,
            ]
        )
        classed(self, "cpms-form", "cpms-case-form")
        label_width(
            self.title,
            self.network,
            self.pseudonym,
            self.sex,
            self.birth_year,
            self.age_at_onset,
            self.country,
            self.hpo_query,
            self.hpo_onset,
            self.dx_query,
            self.gene,
            self.hgvs,
            self.zygosity,
            self.classification,
            self.clinical_summary,
            self.question,
            self.urgency,
        )

        if case_id is not None:
            self.load(case_id)
        self._show_status()

    # -- building ----------------------------------------------------------------

    def _build_case_and_patient(self) -> None:
        wide = w.Layout(width="460px")
        self.title = classed(
            w.Text(description="Title", placeholder="e.g. Girl, 4, drug-resistant seizures"),
            "cpms-title",
        )
        self.title.layout = wide
        self.network = classed(
            w.Text(description="Network", placeholder="your ERN (default: yours)"),
            "cpms-network",
        )
        self.pseudonym = classed(
            w.Text(description="Pseudonym", placeholder="your hospital's code, never a name"),
            "cpms-pseudonym",
        )
        self.sex = classed(
            w.Dropdown(description="Sex", options=[s.value for s in Sex], value="unknown"),
            "cpms-sex",
        )
        self.birth_year = classed(
            w.Text(description="Born in", placeholder="year, e.g. 2019"), "cpms-birth-year"
        )
        self.age_at_onset = classed(
            w.Text(description="Onset age", placeholder="years"), "cpms-age-at-onset"
        )
        self.country = classed(
            w.Text(description="Country", placeholder="ISO code, e.g. FR"), "cpms-country"
        )

    def _build_phenotypes(self) -> None:
        self.hpo_query = classed(
            w.Text(
                description="Search",
                placeholder="type 2+ letters: seiz, epilep, HP:0001250 …",
                continuous_update=True,
            ),
            "cpms-hpo-query",
        )
        self.hpo_note = classed(w.HTML(), "cpms-note", "cpms-hpo-note")
        self.hpo_hits = classed(
            w.Select(options=[], rows=6, layout=w.Layout(width="640px", display="none")),
            "cpms-hpo-hits",
        )
        self.hpo_presence = classed(
            w.ToggleButtons(options=["observed", "excluded"], value="observed"),
            "cpms-hpo-presence",
        )
        self.hpo_onset = classed(
            w.Dropdown(
                description="Onset",
                options=[("— not given —", NO_ONSET)]
                + [(f"{label} ({code})", code) for code, label in ONSET_TERMS.items()],
                value=NO_ONSET,
            ),
            "cpms-hpo-onset",
        )
        self.add_hpo = classed(
            w.Button(description="Add term", icon="plus", button_style="info"), "cpms-add-hpo"
        )
        self.hpo_list = classed(w.VBox(), "cpms-hpo-list")
        self.hpo_query.observe(self._on_hpo_query, "value")
        self.add_hpo.on_click(lambda _: self.add_selected_hpo())

    def _build_diagnoses(self) -> None:
        self.dx_system = classed(
            w.ToggleButtons(
                options=[("Orphanet", DiagnosisSystem.ORPHA.value), ("ICD-10", "ICD-10")],
                value=DiagnosisSystem.ORPHA.value,
            ),
            "cpms-dx-system",
        )
        self.dx_query = classed(
            w.Text(
                description="Search",
                placeholder="disease name or code",
                continuous_update=True,
            ),
            "cpms-dx-query",
        )
        self.dx_note = classed(w.HTML(), "cpms-note", "cpms-dx-note")
        self.dx_hits = classed(
            w.Select(options=[], rows=5, layout=w.Layout(width="640px", display="none")),
            "cpms-dx-hits",
        )
        self.dx_confirmed = classed(
            w.Checkbox(
                description="confirmed (not only suspected)",
                value=False,
                indent=False,
                layout=w.Layout(width="auto"),
            ),
            "cpms-dx-confirmed",
        )
        self.add_dx = classed(
            w.Button(description="Add diagnosis", icon="plus", button_style="info"),
            "cpms-add-dx",
        )
        self.dx_list = classed(w.VBox(), "cpms-dx-list")
        self.dx_query.observe(self._on_dx_query, "value")
        self.dx_system.observe(self._on_dx_query, "value")
        self.add_dx.on_click(lambda _: self.add_selected_diagnosis())

    def _build_genetics(self) -> None:
        self.gene = classed(
            w.Text(description="Gene", placeholder="HGNC symbol, e.g. SCN1A"), "cpms-gene"
        )
        self.hgvs = classed(
            w.Text(
                description="HGVS",
                placeholder="e.g. NM_001165963.4:c.2589+3A>T",
                continuous_update=True,
                layout=w.Layout(width="460px"),
            ),
            "cpms-hgvs",
        )
        self.hgvs_check = classed(w.HTML(), "cpms-hgvs-check")
        self.zygosity = classed(
            w.Dropdown(
                description="Zygosity",
                options=[z.value for z in Zygosity],
                value=Zygosity.HETEROZYGOUS.value,
            ),
            "cpms-zygosity",
        )
        self.classification = classed(
            w.Dropdown(
                description="ACMG",
                options=[c.value for c in AcmgClass],
                value=AcmgClass.UNCERTAIN.value,
            ),
            "cpms-acmg",
        )
        self.add_finding = classed(
            w.Button(description="Add finding", icon="plus", button_style="info"),
            "cpms-add-finding",
        )
        self.finding_list = classed(w.VBox(), "cpms-finding-list")
        self.hgvs.observe(self._on_hgvs, "value")
        self.add_finding.on_click(lambda _: self.add_current_finding())

    def _build_question_and_actions(self) -> None:
        area = w.Layout(width="760px", height="90px")
        self.clinical_summary = classed(
            w.Textarea(
                description="Summary",
                placeholder="history, tests, treatments so far (no names, no dates of birth)",
                layout=area,
            ),
            "cpms-summary",
        )
        self.question = classed(
            w.Textarea(
                description="Question",
                placeholder="what do you ask the panel?",
                layout=area,
            ),
            "cpms-question",
        )
        self.urgency = classed(
            w.Dropdown(
                description="Urgency",
                options=[u.value for u in Urgency],
                value=Urgency.ROUTINE.value,
            ),
            "cpms-urgency",
        )
        self.save_button = classed(
            w.Button(description="Save draft", icon="save", button_style=""), "cpms-save"
        )
        self.submit_button = classed(
            w.Button(description="Submit", icon="paper-plane", button_style="success"),
            "cpms-submit",
        )
        self.status = classed(w.HTML(), "cpms-status")
        self.problems = classed(w.HTML(), "cpms-problems")
        self.save_button.on_click(lambda _: self.save())
        self.submit_button.on_click(lambda _: self.submit())

    # -- searching ---------------------------------------------------------------

    def _search(self, fn_name: str, text: str) -> tuple[list[dict[str, Any]], str]:
        if self.client is None:
            return [], "not connected to the case store"
        try:
            return getattr(self.client, fn_name)(text, SEARCH_LIMIT), ""
        except CpmsError as exc:
            return [], "search unavailable: " + "; ".join(exc.reasons)
        except Exception as exc:  # noqa: BLE001 - a dead network must not kill the form
            return [], f"search unavailable: {type(exc).__name__}"

    def _on_hpo_query(self, _change: object = None) -> None:
        text = self.hpo_query.value.strip()
        if len(text) < MIN_QUERY:
            hits, note = [], ""
        else:
            hits, note = self._search("search_hpo", text)
            if not hits and not note:
                note = "no HPO term found"
        self._hpo_hits = {h["id"]: h for h in hits}
        self.hpo_hits.options = [(hit_label(h), h["id"]) for h in hits]
        self.hpo_hits.value = hits[0]["id"] if hits else None
        self.hpo_hits.layout.display = "" if hits else "none"
        self.hpo_note.value = html.escape(note)

    def _on_dx_query(self, _change: object = None) -> None:
        text = self.dx_query.value.strip()
        if len(text) < MIN_QUERY:
            hits, note = [], ""
        else:
            fn = "search_orpha" if self.dx_system.value == "ORPHA" else "search_icd10"
            hits, note = self._search(fn, text)
            if not hits and not note:
                note = "no disease found"
        self._dx_hits = {}
        for h in hits:
            self._dx_hits[str(h.get("id") or h.get("code"))] = h
        self.dx_hits.options = [(hit_label(h), code) for code, h in self._dx_hits.items()]
        self.dx_hits.value = next(iter(self._dx_hits), None)
        self.dx_hits.layout.display = "" if hits else "none"
        self.dx_note.value = html.escape(note)

    def _on_hgvs(self, _change: object = None) -> None:
        text = self.hgvs.value.strip()
        if not text:
            self._hgvs_verdict = (None, "")
        elif self.client is None:
            self._hgvs_verdict = (None, "not checked: not connected to the case store")
        else:
            try:
                result = self.client.check_hgvs(text)
                self._hgvs_verdict = _hgvs_verdict(result, text)
            except ValidationError as exc:
                self._hgvs_verdict = (False, "; ".join(p.reason for p in error_problems(exc)))
            except Exception as exc:  # noqa: BLE001
                self._hgvs_verdict = (None, f"not checked: {exc}")
        ok, reason = self._hgvs_verdict
        if ok is True:
            self.hgvs_check.value = f'<span class="cpms-good">✔ {html.escape(reason)}</span>'
        elif ok is False:
            self.hgvs_check.value = f'<span class="cpms-bad">✘ {html.escape(reason)}</span>'
        else:
            self.hgvs_check.value = f'<span class="cpms-note">{html.escape(reason)}</span>'

    # -- adding and removing -----------------------------------------------------

    def add_selected_hpo(self) -> bool:
        hpo_id = self.hpo_hits.value
        if not hpo_id:
            self._show_problems([FieldProblem("phenotypes", "search and choose a term first")])
            return False
        hit = self._hpo_hits.get(hpo_id, {})
        try:
            self.model.add_phenotype(
                hpo_id,
                str(hit.get("label") or ""),
                excluded=self.hpo_presence.value == "excluded",
                onset=self.hpo_onset.value or None,
            )
        except ValidationError as exc:
            self._show_problems(error_problems(exc))
            return False
        self._render_lists()
        self._show_problems([])
        return True

    def remove_hpo(self, hpo_id: str) -> None:
        self.model.remove_phenotype(hpo_id)
        self._render_lists()

    def add_selected_diagnosis(self) -> bool:
        code = self.dx_hits.value
        if not code:
            self._show_problems([FieldProblem("diagnoses", "search and choose a disease first")])
            return False
        hit = self._dx_hits.get(code, {})
        if any(d.code == code for d in self.model.diagnoses):
            self._show_problems([FieldProblem("diagnoses", f"{code} is already listed")])
            return False
        try:
            self.model.add_diagnosis(
                self.dx_system.value, code, str(hit.get("label") or ""), self.dx_confirmed.value
            )
        except ValidationError as exc:
            self._show_problems(error_problems(exc))
            return False
        self._render_lists()
        self._show_problems([])
        return True

    def remove_diagnosis(self, code: str) -> None:
        self.model.diagnoses = [d for d in self.model.diagnoses if d.code != code]
        self._render_lists()

    def add_current_finding(self) -> bool:
        ok, reason = self._hgvs_verdict
        if ok is False and self.hgvs.value.strip():
            self._show_problems([FieldProblem("genetics.hgvs", reason)])
            return False
        try:
            self.model.add_finding(
                self.gene.value.strip(),
                self.hgvs.value.strip(),
                self.zygosity.value,
                self.classification.value,
            )
        except ValidationError as exc:
            self._show_problems(error_problems(exc))
            return False
        self.gene.value = ""
        self.hgvs.value = ""
        self._render_lists()
        self._show_problems([])
        return True

    def remove_finding(self, index: int) -> None:
        del self.model.genetics[index]
        self._render_lists()

    def _row(self, text: str, css: str, on_remove: Callable[[], None]) -> w.HBox:
        remove = classed(
            w.Button(
                description="",
                icon="times",
                tooltip="remove",
                layout=w.Layout(width="32px"),
            ),
            "cpms-remove",
        )
        remove.on_click(lambda _: on_remove())
        row = classed(
            w.HBox([classed(w.HTML(html.escape(text)), "cpms-chip-text"), remove]),
            "cpms-chip-row",
            css,
        )
        row.remove_button = remove
        return row

    def _render_lists(self) -> None:
        rows = []
        for p in self.model.phenotypes:
            text = f"{p.hpo_id} {p.label}".strip()
            extra = []
            if p.excluded:
                extra.append("excluded")
            if p.onset:
                extra.append(ONSET_TERMS.get(p.onset, p.onset).lower())
            if extra:
                text += f" — {', '.join(extra)}"
            rows.append(self._row(text, "cpms-hpo-row", lambda i=p.hpo_id: self.remove_hpo(i)))
        self.hpo_list.children = rows
        self.dx_list.children = [
            self._row(
                f"{d.code} {d.label}".strip() + (" — confirmed" if d.confirmed else " — suspected"),
                "cpms-dx-row",
                lambda c=d.code: self.remove_diagnosis(c),
            )
            for d in self.model.diagnoses
        ]
        self.finding_list.children = [
            self._row(
                f"{g.gene} {g.hgvs} — {g.zygosity.value}, {g.classification.value}",
                "cpms-finding-row",
                lambda i=i: self.remove_finding(i),
            )
            for i, g in enumerate(self.model.genetics)
        ]

    # -- widgets <-> model -------------------------------------------------------

    def _sync(self) -> list[FieldProblem]:
        """Copy the typed values into the model; what cannot be copied is a problem."""
        problems: list[FieldProblem] = []
        m = self.model
        m.title = self.title.value
        m.network = self.network.value.strip()
        m.pseudonym = self.pseudonym.value
        m.sex = self.sex.value
        m.birth_year = _int_or_none(self.birth_year.value, "patient.birth_year", problems)
        m.age_at_onset_years = _int_or_none(
            self.age_at_onset.value, "patient.age_at_onset_years", problems
        )
        m.country = self.country.value
        m.clinical_summary = self.clinical_summary.value
        m.question = self.question.value
        m.urgency = self.urgency.value
        return problems

    def _fill(self) -> None:
        """Show the model in the widgets (after loading a draft)."""
        m = self.model
        self.title.value = m.title
        self.network.value = m.network or ""
        self.pseudonym.value = m.pseudonym
        self.sex.value = m.sex
        self.birth_year.value = "" if m.birth_year is None else str(m.birth_year)
        self.age_at_onset.value = "" if m.age_at_onset_years is None else str(m.age_at_onset_years)
        self.country.value = m.country
        self.clinical_summary.value = m.clinical_summary
        self.question.value = m.question
        self.urgency.value = m.urgency
        self._render_lists()

    def load(self, case_id: str) -> None:
        """Continue a stored draft."""
        if self.client is None:
            raise CpmsError("a client is needed to load a case")
        self.model = CaseFormModel.from_case(self.client.get_case(case_id))
        self._fill()
        self._show_status()

    # -- saving and submitting ---------------------------------------------------

    def on_save(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(case_id)`` whenever the case has been saved (e.g. to show consent)."""
        self._on_save.append(callback)

    def _saved(self) -> None:
        if self.model.case_id is not None:
            for cb in self._on_save:
                try:
                    cb(self.model.case_id)
                except Exception as exc:  # noqa: BLE001 - a listener must not break the form
                    self._show_problems(error_problems(exc))

    def save(self) -> Case | None:
        """Save the draft (create the case first time); show every problem by field."""
        problems = self._sync() + self.model.validate()
        if self.client is None:
            problems.append(FieldProblem("store", "not connected to the case store"))
        if problems:
            self._show_problems(problems)
            return None
        before = self.model.case_id
        try:
            case = self.model.save(self.client)
        except Exception as exc:  # noqa: BLE001 - shown, not raised, in a widget
            self._show_problems(error_problems(exc))
            self._show_status()
            if self.model.case_id != before:
                self._saved()
            return None
        self._show_problems([], ok=f"Draft saved at {case.updated_at:%H:%M:%S}.")
        self._show_status()
        self._saved()
        return case

    def submit(self) -> Case | None:
        """Save, then submit to the panel; show every problem (the store's included)."""
        problems = self._sync() + self.model.validate(for_submission=True)
        if self.client is None:
            problems.append(FieldProblem("store", "not connected to the case store"))
        elif problems and self.model.case_id is not None:
            problems += self._consent_problems()
        if problems:
            self._show_problems(problems)
            return None
        before = self.model.case_id
        try:
            case = self.model.submit(self.client)
        except Exception as exc:  # noqa: BLE001
            self._show_problems(error_problems(exc))
            self._show_status()
            if self.model.case_id != before:
                self._saved()
            return None
        self._show_problems([], ok="Submitted: the network's panel will discuss the case.")
        self._show_status()
        if self.model.case_id != before:
            self._saved()
        return case

    def _consent_problems(self) -> list[FieldProblem]:
        try:
            state = self.client.consents(self.model.case_id)
        except Exception:  # noqa: BLE001 - the store lists them again at submission
            return []
        return [
            FieldProblem(*(r.split(": ", 1) if ": " in r else ("consent", r)))
            for r in state.get("blocking_submission", [])
        ]

    # -- showing -----------------------------------------------------------------

    def _show_problems(self, problems: list[FieldProblem], ok: str = "") -> None:
        self.last_problems = list(problems)
        self.problems.value = problems_html(problems, ok=ok)

    def _show_status(self) -> None:
        status = self.model.status
        word = _STATUS_WORDS.get(status, status)
        case = ""
        if self.model.case_id:
            case = f" · case <code>{html.escape(self.model.case_id)}</code>"
        self.status.value = (
            f'Status: <span class="cpms-status-value cpms-is-{html.escape(status)}" '
            f'data-status="{html.escape(status)}">{html.escape(word)}</span>{case}'
        )


def _hgvs_verdict(result: Any, typed: str = "") -> tuple[bool | None, str]:
    """(valid?, what to show) from the store's HGVS check ``{"valid", "normalised", "reason"}``."""
    if not isinstance(result, dict) or "valid" not in result:
        return None, "not checked"
    if result["valid"]:
        normalised = str(result.get("normalised") or "")
        if normalised and normalised != typed:
            return True, f"valid HGVS, written {normalised}"
        return True, "valid HGVS"
    reason = str(result.get("reason") or "not a valid HGVS description")
    return False, reason.partition(": ")[2] if reason.startswith("genetics") else reason
