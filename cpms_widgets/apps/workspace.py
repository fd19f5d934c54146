"""The review workspace of one case: what the panel reads, writes, discusses and signs.

Tabs: the case summary (title, clinical summary, phenotypes with their HPO
labels, diagnoses with ORPHA / ICD-10 labels, genetic findings, the
clinician's question, consent state, attachments), the images (each
whole-slide image in the notebook's OpenSeadragon viewer with its shared
annotations, and the DICOM series, opened in the notebook's DICOM viewer when
one is chosen), the contributions (each expert's opinion; mine editable until
the outcome is drafted), the threaded discussion with mentions and the slide
annotations (each can move the slide viewer to it), requests for more
information to the case owner (who answers here or from a notebook),
meetings (each participant's
local time, an .ics invitation, attendance and minutes) and the outcome (the
lead drafts; every member endorses or dissents with a fresh authenticator
code).

Every action is one method (``save_contribution``, ``post_message``,
``request_information``, ``answer_information``, ``schedule_meeting``,
``record_meeting``, ``draft_outcome``, ``endorse``, ``open_series``,
``show_annotation``) that the buttons call
and tests call directly; each goes to the store as the signed-in user, and
the store enforces membership and the lifecycle (a refusal shows its
reasons in :class:`~cpms_widgets.apps.status.StatusLine`). Long discussions
render as one Markdown document, not one widget per message, so a case with
hundreds of messages stays quick to open.

Loading reads every part of the case at once. A part the store refuses to
this person (403: an owner is not on the panel, so the discussion is not
theirs to read) is not shown as if it were empty: its tab says which part is
withheld and the store's reasons (:attr:`ReviewWorkspace.withheld`). Only
where 404 truly means "not there yet" (no panel assembled, no outcome
drafted) is it taken as absence. The viewers are heavy (an ESM bundle, a
grant, an audited read each), so they are built only when the Images tab is
shown (slides) or a series is chosen (DICOM), never on page load.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import panel as pn
import param
from panel.viewable import Viewer

from cpms_hub.domain import Case, CaseStatus, CpmsError, SlideAnnotation, ValidationError
from cpms_hub.domain.review import (
    Contribution,
    EndorsementDecision,
    InformationRequest,
    Meeting,
    Message,
    OutcomeDraft,
    Panel,
    PanelRole,
)

from ..client import CaseStoreClient
from .status import StatusLine

__all__ = ["PARTS", "Part", "ReviewWorkspace", "thread_order", "local_times"]


@dataclass(frozen=True)
class Part:
    """One part of the workspace read from the store at load time."""

    param: str  # the workspace parameter it fills
    method: str  # the client method that reads it (called with the case id)
    label: str  # how the page names it when it is withheld
    absent_on_404: bool = False  # 404 means "not there yet", not a fault


#: what the workspace reads besides the case itself, in the order loaded
PARTS: tuple[Part, ...] = (
    Part("panel", "get_panel", "the panel", absent_on_404=True),
    Part("consent", "consents", "the consent record"),
    Part("files", "list_files", "the attachments"),
    Part("slides", "list_slides", "the slides"),
    Part("studies", "list_studies", "the DICOM studies"),
    Part("contributions", "contributions", "the contributions"),
    Part("messages", "messages", "the discussion"),
    Part("annotations", "case_annotations", "the slide annotations"),
    Part("requests", "information_requests", "the requests for information"),
    Part("meetings", "meetings", "the meetings"),
    Part("outcome", "outcome_json", "the outcome", absent_on_404=True),
)
_PART = {p.param: p for p in PARTS}
_IMAGES_TAB = 1  # the Images tab's index (see ``__panel__``)


def thread_order(messages: list[Message]) -> list[tuple[int, Message]]:
    """Messages as a thread: each reply right after its parent, indented one level more.

    Replies to a message that is not there (removed, or not visible) start a thread.
    """
    by_parent: dict[str | None, list[Message]] = {}
    ids = {m.id for m in messages}
    for m in sorted(messages, key=lambda m: (m.created_at, m.id)):
        parent = m.parent_id if m.parent_id in ids else None
        by_parent.setdefault(parent, []).append(m)
    out: list[tuple[int, Message]] = []
    stack = [(0, m) for m in reversed(by_parent.get(None, []))]
    while stack:
        depth, m = stack.pop()
        out.append((depth, m))
        stack.extend((depth + 1, r) for r in reversed(by_parent.get(m.id, [])))
    return out


def local_times(meeting: Meeting) -> list[tuple[str, str, str]]:
    """``(user, time zone, local start)`` for each participant of ``meeting``."""
    rows = []
    for user, tz in meeting.participants:
        try:
            local = meeting.starts_at.astimezone(ZoneInfo(tz))
            rows.append((user, tz, f"{local:%a %Y-%m-%d %H:%M} ({local:%Z})"))
        except (ZoneInfoNotFoundError, ValueError):
            rows.append((user, tz, f"{meeting.starts_at:%Y-%m-%d %H:%M} UTC"))
    return rows


def _md_escape(text: str) -> str:
    # opinions and messages are shown as text, not as markup or HTML of their authors
    return "".join("\\" + c if c in "\\`*_{}[]()#+!|<>" else c for c in text)


class ReviewWorkspace(Viewer):
    """Everything the panel does on one case."""

    case_id = param.String(default="")
    user = param.String(default="")

    case = param.ClassSelector(class_=Case, default=None, allow_None=True)
    panel = param.ClassSelector(class_=Panel, default=None, allow_None=True)
    consent = param.Dict(default={})
    files = param.List(default=[])
    slides = param.List(default=[])
    studies = param.List(default=[], doc="The case's DICOM studies, each with its series")
    annotations = param.List(default=[], item_type=SlideAnnotation)
    contributions = param.List(default=[], item_type=Contribution)
    messages = param.List(default=[], item_type=Message)
    requests = param.List(default=[], item_type=InformationRequest)
    meetings = param.List(default=[], item_type=Meeting)
    loading = param.Boolean(default=True, doc="Still fetching the case from the store")
    withheld = param.Dict(
        default={}, doc="part → the store's reasons, for each part refused to this person"
    )
    dicom_series = param.String(default="", doc="The DICOM series on show ('' = none yet)")
    outcome = param.Dict(
        default=None, allow_None=True, doc="GET /outcome as sent (sha256, pending)"
    )

    # what the person is writing
    contribution_text = param.String(default="")
    message_text = param.String(default="")
    reply_to = param.String(default="", doc="id of the message answered ('' = new thread)")
    mentions = param.List(default=[], item_type=str)
    question = param.String(default="")
    meeting_title = param.String(default="Panel meeting")
    meeting_start = param.Date(default=None, allow_None=True)
    meeting_minutes = param.Integer(default=60, bounds=(5, 600))
    totp = param.String(default="", doc="My authenticator's current code (step-up to sign)")
    dissent_reason = param.String(default="")

    def __init__(self, client: CaseStoreClient, *, load: bool = True, **params) -> None:
        super().__init__(**params)
        self.client = client
        self.status = StatusLine()
        # the viewers, built on demand (see the module's docstring)
        self._slide_apps: dict[str, Any] = {}
        self.dicom: Any = None  # a DicomApp once a series is opened
        self._dicom_area = pn.Column(sizing_mode="stretch_width")
        self._tabs: pn.Tabs | None = None
        if not load:
            return
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            # served: show the page first, then fetch without holding up the other
            # sessions of this (single-threaded) server
            pn.state.onload(self._load_served)
        else:
            self.refresh()

    # -- reading -------------------------------------------------------------------

    async def _load_served(self) -> None:
        cid = self.case_id
        try:
            # the calls block (a sync client): each in a worker thread, all at once
            case, *got = await asyncio.gather(
                asyncio.to_thread(self.client.get_case, cid),
                *(asyncio.to_thread(self._read_part, p) for p in PARTS),
            )
        except CpmsError as exc:
            self.status.fail("; ".join(exc.reasons) or str(exc))
            self.loading = False
            return
        self._apply(case, dict(zip((p.param for p in PARTS), got, strict=True)))

    def _apply(self, case: Case, got: dict[str, tuple[Any, str | None]]) -> None:
        """Show ``case`` and the parts read (each ``(value, reasons it was withheld)``)."""
        values = {name: value for name, (value, _why) in got.items()}
        withheld = {name: why for name, (_value, why) in got.items() if why is not None}
        contributions = values["contributions"] or []
        mine = next((c for c in contributions if c.author == self.user), None)
        self.param.update(
            case=case,
            panel=values["panel"],
            consent=values["consent"] or {},
            files=values["files"] or [],
            slides=values["slides"] or [],
            studies=values["studies"] or [],
            contributions=contributions,
            messages=values["messages"] or [],
            annotations=values["annotations"] or [],
            requests=values["requests"] or [],
            meetings=values["meetings"] or [],
            outcome=values["outcome"],
            withheld=withheld,
            loading=False,
            **(
                {"contribution_text": mine.body}
                if mine is not None and not self.contribution_text
                else {}
            ),
        )

    def refresh(self) -> None:
        self.status.run("", self._load)
        self.status.message = ""
        self.loading = False

    def _load(self) -> bool:
        case = self.client.get_case(self.case_id)
        self._apply(case, {p.param: self._read_part(p) for p in PARTS})
        return True

    def _read_part(self, part: Part) -> tuple[Any, str | None]:
        """``(value, None)``, or ``(None, reasons)`` when the store withholds the part.

        A refusal (403) is kept with its reasons, so the page can say what is withheld
        and why; so is a 404 that does not mean absence (a part that should be there).
        Anything else (401, 409, a server fault) is raised: the page cannot be shown.
        """
        try:
            return getattr(self.client, part.method)(self.case_id), None
        except CpmsError as exc:
            status = getattr(exc, "status", None)
            if status == 404 and part.absent_on_404:
                return None, None
            if status in (403, 404):
                return None, "; ".join(exc.reasons) or str(exc)
            raise

    def withheld_note(self, name: str) -> str | None:
        """What the page says in place of part ``name`` when it is withheld (else None)."""
        why = self.withheld.get(name)
        if why is None:
            return None
        return f"You may not see {_PART[name].label}: {why}"

    def _withheld_pane(self, name: str) -> pn.pane.Alert | None:
        note = self.withheld_note(name)
        if note is None:
            return None
        return pn.pane.Alert(note, alert_type="warning", sizing_mode="stretch_width")

    @property
    def my_role(self) -> PanelRole | None:
        m = self.panel.member(self.user) if self.panel else None
        return m.role if m else None

    @property
    def is_lead(self) -> bool:
        return self.my_role is PanelRole.LEAD

    @property
    def is_owner(self) -> bool:
        return self.case is not None and self.case.owner == self.user

    @property
    def contribution_editable(self) -> bool:
        return self.case is not None and self.case.status in (
            CaseStatus.PANEL_ASSEMBLED,
            CaseStatus.IN_DISCUSSION,
            CaseStatus.REOPENED,
        )

    # -- actions -------------------------------------------------------------------

    def save_contribution(self, text: str | None = None) -> bool:
        text = self.contribution_text if text is None else text
        done = self.status.run("Contribution saved", self.client.contribute, self.case_id, text)
        if done is not None:
            self.contribution_text = done.body
            self._reload("contributions")
            self._reload_case()
        return done is not None

    def post_message(
        self, body: str | None = None, *, parent_id: str | None = None, mentions=None
    ) -> bool:  # noqa: ANN001
        body = self.message_text if body is None else body
        parent = parent_id if parent_id is not None else (self.reply_to or None)
        who = list(self.mentions if mentions is None else mentions)
        # "@name" in the text mentions a panel member too
        members = {m.user for m in self.panel.members} if self.panel else set()
        who += [w[1:].rstrip(".,:;!?") for w in body.split() if w.startswith("@")]
        who = sorted({w for w in who if w in members})
        done = self.status.run(
            "Message posted",
            self.client.post_message,
            self.case_id,
            body,
            parent_id=parent,
            mentions=who,
        )
        if done is not None:
            self.message_text = ""
            self.reply_to = ""
            self.mentions = []
            self._reload("messages")
            self._reload_case()
        return done is not None

    def request_information(self, question: str | None = None) -> bool:
        question = self.question if question is None else question
        done = self.status.run(
            "Request sent to the case owner",
            self.client.request_information,
            self.case_id,
            question,
        )
        if done is not None:
            self.question = ""
            self._reload("requests")
        return done is not None

    def answer_information(self, request_id: str, answer: str) -> bool:
        done = self.status.run(
            "Answer sent", self.client.answer_information_request, self.case_id, request_id, answer
        )
        if done is not None:
            self._reload("requests")
        return done is not None

    def schedule_meeting(
        self,
        title: str | None = None,
        starts_at: datetime | None = None,
        minutes: int | None = None,
    ) -> bool:
        starts_at = starts_at or self.meeting_start
        if starts_at is None:
            self.status.fail("starts_at: choose when the meeting starts")
            return False
        if starts_at.tzinfo is None:
            # the picker's time is shown and meant as UTC
            starts_at = starts_at.replace(tzinfo=UTC)
        done = self.status.run(
            "Meeting scheduled",
            self.client.schedule_meeting,
            self.case_id,
            title or self.meeting_title,
            starts_at,
            minutes or self.meeting_minutes,
        )
        if done is not None:
            self._reload("meetings")
        return done is not None

    def meeting_ics(self, meeting_id: str) -> str | None:
        return self.status.run("", self.client.meeting_ics, self.case_id, meeting_id)

    def record_meeting(self, meeting_id: str, attended: list[str], minutes: str) -> bool:
        done = self.status.run(
            "Attendance and minutes recorded",
            self.client.record_meeting,
            self.case_id,
            meeting_id,
            attended,
            minutes,
        )
        if done is not None:
            self._reload("meetings")
        return done is not None

    def draft_outcome(
        self,
        *,
        diagnosis_code: str,
        diagnosis_label: str,
        investigations: list[str] | tuple[str, ...],
        treatment_plan: str,
        follow_up: date,
        summary: str = "",
    ) -> bool:
        try:
            draft = OutcomeDraft(
                diagnosis_code=diagnosis_code.strip(),
                diagnosis_label=diagnosis_label,
                investigations=tuple(i for i in investigations if i.strip()),
                treatment_plan=treatment_plan,
                follow_up=follow_up,
                summary=summary,
            )
        except ValidationError as exc:
            self.status.fail("; ".join(exc.reasons))
            return False
        done = self.status.run("Outcome drafted", self.client.draft_outcome, self.case_id, draft)
        if done is not None:
            self.outcome = self.client.outcome_json(self.case_id)
            self._reload_case()
        return done is not None

    def endorse(
        self,
        totp: str | None = None,
        *,
        decision: EndorsementDecision | str = EndorsementDecision.ENDORSE,
        reason: str | None = None,
    ) -> bool:
        code = (self.totp if totp is None else totp).strip()
        decision = EndorsementDecision(decision)
        reason = self.dissent_reason if reason is None else reason
        if decision is EndorsementDecision.DISSENT and not reason.strip():
            self.status.fail("reason: say why you dissent")
            return False
        done = self.status.run(
            "Outcome endorsed" if decision is EndorsementDecision.ENDORSE else "Dissent recorded",
            self.client.endorse_outcome,
            self.case_id,
            totp=code,
            decision=decision,
            reason=reason if decision is EndorsementDecision.DISSENT else "",
        )
        self.totp = ""
        if done is not None:
            self.dissent_reason = ""
            self.outcome = self.client.outcome_json(self.case_id)
            self._reload_case()
        return done is not None

    def _outcome_pdf(self):  # noqa: ANN202 - a file-like for FileDownload
        import io

        return io.BytesIO(self.status.run("", self.client.outcome_pdf, self.case_id) or b"")

    def _reload(self, name: str) -> None:
        """Read part ``name`` again (after an action changed it)."""
        value, why = self._read_part(_PART[name])
        if value is None and isinstance(self.param[name], param.List):
            value = []
        withheld = {k: v for k, v in self.withheld.items() if k != name}
        if why is not None:
            withheld[name] = why
        self.param.update(**{name: value, "withheld": withheld})

    def _reload_case(self) -> None:
        self.case = self.client.get_case(self.case_id)
        self._reload("panel")

    # -- views ---------------------------------------------------------------------

    @param.depends("case", "consent", "files", "loading", "withheld")
    def _summary_view(self):  # noqa: ANN202
        c = self.case
        if c is None:
            return pn.pane.Markdown(
                "Loading the case…" if self.loading else "The case could not be opened."
            )
        lines = [f"## {_md_escape(c.title)}", f"*{c.status.value}* · {c.hospital} · {c.network}"]
        if c.clinical_summary:
            lines += ["", _md_escape(c.clinical_summary)]
        content = c.content
        if content is not None:
            if content.question:
                lines += ["", "### The clinician's question", _md_escape(content.question)]
            lines += ["", f"Urgency: **{content.urgency.value}**"]
            if content.patient is not None:
                p = content.patient
                lines += [
                    f"Patient: {p.sex.value}"
                    + (f", born {p.birth_year}" if p.birth_year else "")
                    + (f", onset at {p.age_at_onset_years} y" if p.age_at_onset_years else "")
                ]
            if content.phenotypes:
                lines += ["", "### Phenotype (HPO)"]
                lines += [
                    f"- {'not ' if ph.excluded else ''}{ph.label or ph.hpo_id} ({ph.hpo_id})"
                    + (f", onset {ph.onset}" if ph.onset else "")
                    for ph in content.phenotypes
                ]
            if content.diagnoses:
                lines += ["", "### Diagnoses"]
                lines += [
                    f"- {d.label or d.code} ({d.code}, {d.system.value})"
                    + (" — confirmed" if d.confirmed else " — suspected")
                    for d in content.diagnoses
                ]
            if content.genetics:
                lines += ["", "### Genetics"]
                lines += [
                    f"- {g.gene} {g.hgvs} · {g.zygosity.value} · {g.classification.value}"
                    for g in content.genetics
                ]
        granted = ", ".join(self.consent.get("granted", [])) or "none recorded"
        withdrawn = ", ".join(self.consent.get("withdrawn", []))
        lines += ["", "### Consent"]
        if "consent" in self.withheld:
            lines += [f"*{_md_escape(self.withheld_note('consent') or '')}*"]
        else:
            lines += [f"Granted: {granted}"]
        if withdrawn:
            lines += [f"Withdrawn: **{withdrawn}**"]
        lines += ["", "### Attachments"]
        lines += [f"- {_md_escape(f.name)} ({f.media_type}, {f.size:,} bytes)" for f in self.files]
        if "files" in self.withheld:
            lines += [f"*{_md_escape(self.withheld_note('files') or '')}*"]
        elif not self.files:
            lines += ["None."]
        return pn.pane.Markdown("\n".join(lines), sizing_mode="stretch_width")

    # -- images --------------------------------------------------------------------

    def slide_app(self, slide_id: str):  # noqa: ANN201 - a SlideReviewApp (Panel loaded late)
        """The viewer of one slide, built on first use and kept (one grant, one audited open)."""
        app = self._slide_apps.get(slide_id)
        if app is None:
            from .slide_app import SlideReviewApp

            app = SlideReviewApp(self.client, self.case_id, slide_id)
            self._slide_apps[slide_id] = app
            # what the viewer learns (its own drawings, the others' it polls) reaches the
            # discussion's list without another read of the store
            app.viewer.param.watch(
                lambda e, sid=slide_id: self._slide_annotations_changed(sid, e.new),
                "annotations",
            )
        return app

    def _slide_annotations_changed(self, slide_id: str, found: list[dict[str, Any]]) -> None:
        others = [a for a in self.annotations if a.slide_id != slide_id]
        self.annotations = others + [SlideAnnotation.from_json(d) for d in found]

    @property
    def series(self) -> list[dict[str, Any]]:
        """The case's DICOM series, flat (study fields copied in), as the viewer lists them."""
        from ..viewers.dicom_viewer import series_choices

        return series_choices(self.studies)

    def open_series(self, series_uid: str) -> bool:
        """Show DICOM series ``series_uid``: the viewer is built now, on first use."""
        if series_uid not in {s["series_uid"] for s in self.series}:
            self.status.fail(f"series_uid: no such series in this case ({series_uid[:64]})")
            return False
        if self.dicom is None:
            try:
                from .dicom_app import DicomApp

                self.dicom = DicomApp(self.client, self.case_id, series_uid)
            except CpmsError as exc:
                self.status.fail("; ".join(exc.reasons) or str(exc))
                return False
            except FileNotFoundError as exc:  # the front end is not built
                self.status.fail(str(exc))
                return False
            self._dicom_area.objects = [self.dicom]
        else:
            self.dicom.viewer.series_uid = series_uid
        self.dicom_series = series_uid
        return True

    def _slide_item(self, s: dict[str, Any]) -> Any:
        label = s.get("name") or s["id"]
        head = pn.pane.Markdown(f"**Slide** {_md_escape(str(label))}")
        try:
            return pn.Column(head, self.slide_app(s["id"]), sizing_mode="stretch_width")
        except CpmsError as exc:
            why = "; ".join(exc.reasons) or type(exc).__name__
            return pn.Column(head, pn.pane.Alert(f"The slide cannot be shown: {why}"))
        except FileNotFoundError as exc:  # `make setup` has not built the viewers
            return pn.Column(head, pn.pane.Alert(str(exc), alert_type="danger"))

    def _series_list(self) -> list[Any]:
        items: list[Any] = [pn.pane.Markdown("### DICOM")]
        for s in self.series:
            what = " · ".join(
                x
                for x in (
                    s["modality"],
                    _md_escape(s["description"]) if s["description"] else "",
                    s["study_date"],
                    f"{s['frames']} image{'s' if s['frames'] != 1 else ''}",
                )
                if x
            )
            btn = pn.widgets.Button(
                name=f"Open {s['modality'] or 'series'}",
                width=140,
                css_classes=["cpms-open-series"],
            )
            btn.on_click(lambda _e, uid=s["series_uid"]: self.open_series(uid))
            items.append(pn.Row(btn, pn.pane.Markdown(what), sizing_mode="stretch_width"))
        items.append(self._dicom_area)
        return items

    @param.depends("slides", "studies", "withheld")
    def _images_view(self):  # noqa: ANN202
        items: list[Any] = [
            note for note in map(self._withheld_pane, ("slides", "studies")) if note is not None
        ]
        if self.slides:
            items.append(pn.pane.Markdown("### Whole-slide images"))
            items += [self._slide_item(s) for s in self.slides]
        if self.studies:
            items += self._series_list()
        if not (self.slides or self.studies) and not items:
            items.append(pn.pane.Markdown("No images."))
        return pn.Column(*items, sizing_mode="stretch_width")

    @param.depends("contributions", "withheld")
    def _contributions_view(self):  # noqa: ANN202
        note = self._withheld_pane("contributions")
        if note is not None:
            return note
        if not self.contributions:
            return pn.pane.Markdown("No contributions yet.")
        text = "\n\n".join(
            f"**{c.author}** · {c.updated_at:%Y-%m-%d %H:%M}\n\n{_md_escape(c.body)}\n\n---"
            for c in self.contributions
        )
        return pn.pane.Markdown(text, sizing_mode="stretch_width")

    @param.depends("messages", "withheld")
    def _discussion_view(self):  # noqa: ANN202
        note = self._withheld_pane("messages")
        if note is not None:
            return note
        if not self.messages:
            return pn.pane.Markdown("No messages yet.")
        out = []
        for depth, m in thread_order(self.messages):
            quote = "> " * depth
            ment = f" → {', '.join('@' + u for u in m.mentions)}" if m.mentions else ""
            out.append(
                f"{quote}**{m.author}** · {m.created_at:%Y-%m-%d %H:%M} · `{m.id[:8]}`{ment}\n"
                f"{quote}\n{quote}{_md_escape(m.body)}\n"
            )
        return pn.pane.Markdown("\n\n".join(out), sizing_mode="stretch_width")

    # -- slide annotations in the discussion ------------------------------------------

    def annotation_rows(self) -> list[dict[str, str]]:
        """The slide annotations as the discussion lists them, oldest first."""
        names = {s["id"]: str(s.get("name") or f"slide {i}") for i, s in enumerate(self.slides, 1)}
        return [
            {
                "id": a.id,
                "slide_id": a.slide_id,
                "slide": names.get(a.slide_id, a.slide_id[:8]),
                "author": a.author,
                "kind": a.kind.value,
                "comment": a.comment,
                "at": f"{a.created_at:%Y-%m-%d %H:%M}",
            }
            for a in sorted(self.annotations, key=lambda a: (a.created_at, a.id))
        ]

    def show_annotation(self, annotation_id: str) -> bool:
        """Open the Images tab with the annotation's slide moved to the annotation."""
        found = next((a for a in self.annotations if a.id == annotation_id), None)
        if found is None:
            self.status.fail("annotation: not among this case's annotations")
            return False
        try:
            app = self.slide_app(found.slide_id)
        except CpmsError as exc:
            self.status.fail("; ".join(exc.reasons) or str(exc))
            return False
        except FileNotFoundError as exc:
            self.status.fail(str(exc))
            return False
        if self._tabs is not None:
            self._tabs.active = _IMAGES_TAB
        # a new annotation may not be in the viewer's list yet: the front end needs it there
        if annotation_id not in {a.get("id") for a in app.viewer.annotations}:
            app.viewer.annotations = app.session.annotations()
        # cleared first, so asking again for the same annotation moves the view again
        app.viewer.focus_annotation = ""
        app.viewer.focus_annotation = annotation_id
        return True

    @param.depends("annotations", "slides", "withheld")
    def _annotations_view(self):  # noqa: ANN202
        note = self._withheld_pane("annotations")
        if note is not None:
            return note
        rows = self.annotation_rows()
        if not rows:
            return pn.Spacer(height=0)
        items: list[Any] = [pn.pane.Markdown("#### Slide annotations")]
        for r in rows:
            text = (
                f"**{r['author']}** · {r['at']} · {r['kind']} on {_md_escape(r['slide'])}"
                f"\n\n{_md_escape(r['comment'])}"
            )
            go = pn.widgets.Button(
                name="Show on the slide", width=150, css_classes=["cpms-show-annotation"]
            )
            go.on_click(lambda _e, aid=r["id"]: self.show_annotation(aid))
            items.append(
                pn.Row(
                    pn.pane.Markdown(text, sizing_mode="stretch_width"),
                    go,
                    sizing_mode="stretch_width",
                )
            )
        return pn.Column(*items, sizing_mode="stretch_width")

    @param.depends("messages", "panel")
    def _discussion_editor(self):  # noqa: ANN202
        options = {"(new thread)": ""} | {
            f"{m.author}: {m.body[:40]} ({m.id[:8]})": m.id for m in self.messages[-200:]
        }
        members = sorted(m.user for m in self.panel.members) if self.panel else []
        reply = pn.widgets.Select.from_param(self.param.reply_to, options=options, name="Reply to")
        ment = pn.widgets.MultiChoice.from_param(
            self.param.mentions, options=members, name="Mention"
        )
        text = pn.widgets.TextAreaInput.from_param(
            self.param.message_text,
            name="Message",
            placeholder="Message to the panel (@name mentions)",
            height=100,
            sizing_mode="stretch_width",
        )
        post = pn.widgets.Button(name="Post", button_type="primary", width=100)
        post.on_click(lambda _e: self.post_message())
        return pn.Column(reply, ment, text, post, sizing_mode="stretch_width")

    @param.depends("requests", "case", "withheld")
    def _requests_view(self):  # noqa: ANN202
        items: list[Any] = [n for n in [self._withheld_pane("requests")] if n is not None]
        for r in self.requests:
            md = f"**{r.asked_by}** asked · {r.asked_at:%Y-%m-%d}\n\n{_md_escape(r.question)}"
            if r.answer is not None:
                md += f"\n\n*{r.answered_by} answered:* {_md_escape(r.answer)}"
            items.append(pn.pane.Markdown(md, sizing_mode="stretch_width"))
            if r.answer is None and self.is_owner:
                box = pn.widgets.TextAreaInput(
                    name="Answer", placeholder="Answer", height=80, sizing_mode="stretch_width"
                )
                btn = pn.widgets.Button(name="Send answer", button_type="primary", width=120)
                btn.on_click(lambda _e, rid=r.id, b=box: self.answer_information(rid, b.value))
                items += [box, btn]
        if not self.requests and "requests" not in self.withheld:
            items.append(pn.pane.Markdown("No requests for information."))
        if self.my_role is not None:
            ask = pn.widgets.TextAreaInput.from_param(
                self.param.question,
                name="Ask the case owner",
                placeholder="Question to the case owner",
                height=80,
            )
            send = pn.widgets.Button(name="Request information", width=180)
            send.on_click(lambda _e: self.request_information())
            items += [ask, send]
        return pn.Column(*items, sizing_mode="stretch_width")

    @param.depends("meetings", "panel", "withheld")
    def _meetings_view(self):  # noqa: ANN202
        items: list[Any] = [n for n in [self._withheld_pane("meetings")] if n is not None]
        members = sorted(m.user for m in self.panel.members) if self.panel else []
        for mt in self.meetings:
            rows = "\n".join(f"| {u} | {tz} | {t} |" for u, tz, t in local_times(mt))
            md = (
                f"**{_md_escape(mt.title)}** · {mt.starts_at:%Y-%m-%d %H:%M} UTC · "
                f"{mt.duration_minutes} min\n\n| participant | time zone | local start |\n"
                f"|---|---|---|\n{rows}"
            )
            if mt.recorded_at:
                md += f"\n\nAttended: {', '.join(mt.attended) or 'nobody'}"
                if mt.minutes:
                    md += f"\n\nMinutes: {_md_escape(mt.minutes)}"
            items.append(pn.pane.Markdown(md, sizing_mode="stretch_width"))
            items.append(
                pn.widgets.FileDownload(
                    callback=lambda mid=mt.id: _ics_file(self.meeting_ics(mid)),
                    filename="cpms-meeting.ics",
                    label="Download .ics invitation",
                    width=220,
                )
            )
            if self.my_role is not None and not mt.recorded_at:
                who = pn.widgets.MultiChoice(name="Attended", options=members)
                mins = pn.widgets.TextAreaInput(name="Minutes", height=80)
                rec = pn.widgets.Button(name="Record attendance and minutes", width=240)
                rec.on_click(
                    lambda _e, mid=mt.id, w=who, m=mins: self.record_meeting(mid, w.value, m.value)
                )
                items += [who, mins, rec]
        if not self.meetings and "meetings" not in self.withheld:
            items.append(pn.pane.Markdown("No meetings."))
        if self.my_role is not None:
            if self.meeting_start is None:
                start = datetime.now(UTC) + timedelta(days=2)
                self.meeting_start = start.replace(minute=0, second=0, microsecond=0, tzinfo=None)
            items += [
                pn.pane.Markdown("#### Schedule a meeting (your browser's time is not used: UTC)"),
                pn.widgets.TextInput.from_param(self.param.meeting_title, name="Title"),
                pn.widgets.DatetimePicker.from_param(self.param.meeting_start, name="Starts (UTC)"),
                pn.widgets.IntInput.from_param(self.param.meeting_minutes, name="Minutes"),
            ]
            sched = pn.widgets.Button(name="Schedule", button_type="primary", width=120)
            sched.on_click(lambda _e: self.schedule_meeting())
            items.append(sched)
        return pn.Column(*items, sizing_mode="stretch_width")

    @param.depends("outcome", "panel", "case", "withheld")
    def _outcome_view(self):  # noqa: ANN202
        items: list[Any] = [n for n in [self._withheld_pane("outcome")] if n is not None]
        o = self.outcome
        if o:
            inv = "\n".join(f"- {_md_escape(i)}" for i in o.get("investigations", []))
            sigs = "\n".join(
                f"- {e['signer']}: **{e['decision']}**"
                + (f" ({_md_escape(e['reason'])})" if e.get("reason") else "")
                for e in o.get("endorsements", [])
            )
            items.append(
                pn.pane.Markdown(
                    f"### Recommendation (version {o['version']}"
                    f"{', signed' if o.get('signed') else ''})\n\n"
                    f"**Diagnosis:** {_md_escape(o['diagnosis_label'])} ({o['diagnosis_code']})"
                    f"\n\n**Investigations:**\n{inv}\n\n**Treatment plan:** "
                    f"{_md_escape(o['treatment_plan'])}\n\n**Follow-up:** {o['follow_up']}\n\n"
                    + (f"{_md_escape(o['summary'])}\n\n" if o.get("summary") else "")
                    + f"SHA-256 `{o.get('sha256', '')}`\n\n**Signatures:**\n{sigs or 'none yet'}"
                    + (
                        f"\n\nWaiting for: {', '.join(o.get('pending', []))}"
                        if o.get("pending")
                        else ""
                    ),
                    sizing_mode="stretch_width",
                )
            )
            items.append(
                pn.widgets.FileDownload(
                    callback=self._outcome_pdf,
                    filename="cpms-outcome.pdf",
                    label="Download the report (PDF)",
                    width=240,
                )
            )
        elif "outcome" not in self.withheld:
            items.append(pn.pane.Markdown("No outcome drafted yet."))
        pending = set((o or {}).get("pending", []))
        if o and not o.get("signed") and self.user in pending:
            items += [
                pn.pane.Markdown("#### Sign"),
                pn.widgets.PasswordInput.from_param(
                    self.param.totp,
                    name="Authenticator code",
                    placeholder="Authenticator code",
                    width=200,
                ),
                pn.widgets.TextInput.from_param(
                    self.param.dissent_reason,
                    name="Reason (to dissent)",
                    placeholder="Reason (to dissent)",
                    width=400,
                ),
            ]
            endorse = pn.widgets.Button(name="Endorse", button_type="success", width=120)
            dissent = pn.widgets.Button(name="Dissent", button_type="warning", width=120)
            endorse.on_click(lambda _e: self.endorse())
            dissent.on_click(lambda _e: self.endorse(decision=EndorsementDecision.DISSENT))
            items.append(pn.Row(endorse, dissent))
        if (
            self.is_lead
            and self.case is not None
            and self.case.status
            in (
                CaseStatus.IN_DISCUSSION,
                CaseStatus.OUTCOME_DRAFTED,
            )
        ):
            items.append(self._draft_form(o))
        return pn.Column(*items, sizing_mode="stretch_width")

    def _draft_form(self, o: dict | None):  # noqa: ANN202
        o = o or {}
        code = pn.widgets.TextInput(
            name="Diagnosis (ORPHA code)",
            placeholder="ORPHA:558",
            value=o.get("diagnosis_code", ""),
        )
        label = pn.widgets.TextInput(
            name="Diagnosis label",
            placeholder="Diagnosis label",
            value=o.get("diagnosis_label", ""),
        )
        inv = pn.widgets.TextAreaInput(
            name="Recommended investigations (one a line)",
            placeholder="Recommended investigations (one a line)",
            value="\n".join(o.get("investigations", [])),
            height=80,
        )
        plan = pn.widgets.TextAreaInput(
            name="Treatment plan",
            placeholder="Treatment plan",
            value=o.get("treatment_plan", ""),
            height=80,
        )
        follow = pn.widgets.DatePicker(
            name="Follow-up",
            # six months ahead unless the lead says otherwise
            value=date.fromisoformat(o["follow_up"])
            if o.get("follow_up")
            else date.today() + timedelta(days=182),
        )
        summary = pn.widgets.TextAreaInput(name="Summary", value=o.get("summary", ""), height=80)
        btn = pn.widgets.Button(name="Draft outcome", button_type="primary", width=160)

        def draft(_e) -> None:  # noqa: ANN001
            if follow.value is None:
                self.status.fail("follow_up: choose a follow-up date")
                return
            self.draft_outcome(
                diagnosis_code=code.value,
                diagnosis_label=label.value,
                investigations=inv.value.splitlines(),
                treatment_plan=plan.value,
                follow_up=follow.value,
                summary=summary.value,
            )

        btn.on_click(draft)
        return pn.Column(
            pn.pane.Markdown("#### Draft the recommendation (panel lead)"),
            code,
            label,
            inv,
            plan,
            follow,
            summary,
            btn,
        )

    @param.depends("case")
    def _contribution_editor(self):  # noqa: ANN202
        if self.my_role is None:
            return pn.Spacer(height=0)
        editor = pn.widgets.TextAreaInput.from_param(
            self.param.contribution_text,
            name="My opinion",
            placeholder="My opinion on the case",
            height=160,
            sizing_mode="stretch_width",
            disabled=not self.contribution_editable,
        )
        save = pn.widgets.Button(
            name="Save my contribution",
            button_type="primary",
            width=200,
            disabled=not self.contribution_editable,
        )
        save.on_click(lambda _e: self.save_contribution())
        return pn.Column(editor, save, sizing_mode="stretch_width")

    def __panel__(self):  # noqa: ANN204
        tabs = pn.Tabs(
            ("Summary", self._summary_view),
            # lazy: the viewers are built when the tab is first shown, not on page load
            ("Images", pn.param.ParamMethod(self._images_view, lazy=True)),
            ("Contributions", pn.Column(self._contribution_editor, self._contributions_view)),
            (
                "Discussion",
                pn.Column(self._discussion_editor, self._discussion_view, self._annotations_view),
            ),
            ("Information", self._requests_view),
            ("Meetings", self._meetings_view),
            ("Outcome", self._outcome_view),
            dynamic=True,
            sizing_mode="stretch_width",
        )
        self._tabs = tabs
        back = pn.pane.Markdown("[← inbox](?)")
        return pn.Column(back, self.status, tabs, sizing_mode="stretch_width", name="workspace")


def _ics_file(text: str | None):  # noqa: ANN202
    import io

    return io.BytesIO((text or "").encode("utf-8"))
