"""HTTP routes of panel review: panels, invitations, discussion, meetings, outcome, inbox.

All paths are below the API root (``/services/cpms-store/api/v1``); bodies and answers
are JSON unless said otherwise; errors have the one shape ``{status, error, reasons}``.
Each route is decided by :func:`cpms_hub.policy.decide` and carried out by
:class:`cpms_hub.store.review.ReviewStore`, which checks the lifecycle
(:data:`cpms_hub.domain.review.TRANSITIONS`: an illegal step is 409 with the reason) and
audits every read and write of patient data in the same transaction.

Coordination (coordinators of the case's network; ``custom:cpms:panels``)

* ``GET /panels?scope=mine|network`` - ``mine``: panels the caller is on or owns;
  ``network``: every case submitted to the coordinator's network, with or without a
  panel. ``[PanelSummary]``: ``{case_id, network, status, urgency, deadline, lead,
  members: int, accepted: int, contributions: int, overdue: bool, submitted_at,
  closed_at}`` (no clinical content).
* ``GET /experts?q=&network=`` - people who may sit on panels (panel members; guests
  from other networks included when ``network`` is empty), matched case-insensitively
  on expertise, name or hospital: ``[{name, full_name, hospital, network, expertise:
  [str], timezone}]``.
* ``PUT /cases/{case_id}/panel`` ``{members: [{user, role: lead|member|guest}],
  urgency: routine|urgent|emergency, deadline: "YYYY-MM-DD", invitation_days: int = 7}``
  assembles (or changes) the panel: exactly one lead; every member becomes a
  ``panel-member`` of the case and gets an invitation (in-app + e-mail). Answers a
  ``Panel``: ``{case_id, network, status, urgency, deadline, assembled_by, assembled_at,
  lead, allowed_actions: [str], members: [{user, role, status:
  invited|accepted|declined|expired, network, invited_at, expires_at, responded_at,
  reason}]}`` (``reason`` only for coordinators).
* ``GET /cases/{case_id}/panel`` - the ``Panel`` (panel members, the case's clinicians,
  the network's coordinators).
* ``POST /cases/{case_id}/panel/{action}`` with ``action`` one of ``start-discussion``
  (coordinator or a panel member), ``close``, ``reopen`` (coordinator) - the ``Panel``; 409 with
  the reason when the lifecycle forbids it.
* ``GET /reports/monitor`` - ``{open: [PanelSummary], overdue: [...], few_contributions:
  [...]}`` for the coordinator's network (``few_contributions``: open panels that would
  close with fewer than two contributions).
* ``GET /reports/activity`` - aggregates only: ``{cases_per_month: [{month, network,
  cases}], time_to_closure: [{case_id, network, days}], contributions_per_panel:
  [{case_id, network, contributions}], by_network: [{network, submitted, open, closed}]}``.

Panel members

* ``GET /invitations`` - the caller's inbox: ``[{case_id, network, role, status, urgency,
  deadline, invited_by, invited_at, expires_at}]``.
* ``POST /cases/{case_id}/invitation/{answer}`` ``{reason}`` with ``answer`` ``accept`` or
  ``decline`` (a reason is required to decline); an expired invitation is 409.
* ``GET /cases/{case_id}/contributions`` - ``[{id, case_id, author, body, created_at,
  updated_at}]``; ``GET .../contributions/mine`` (404 when none yet);
  ``PUT .../contributions/mine`` ``{body}`` writes the caller's own (not empty; frozen once
  the outcome is drafted).
* ``GET /cases/{case_id}/messages`` - ``[{id, case_id, author, body, created_at,
  parent_id, mentions: [user]}]``; ``POST`` ``{body, parent_id, mentions}`` (mentions must
  be on the panel; each is notified).
* ``GET /cases/{case_id}/information-requests`` - ``[{id, case_id, asked_by, question,
  asked_at, answer, answered_by, answered_at}]`` (panel, clinicians, coordinator);
  ``POST`` ``{question}`` (panel members); ``POST .../{request_id}/answer`` ``{answer}``
  (the case's owner or assistants, from the notebook or the app).
* ``GET /cases/{case_id}/meetings`` - ``[{id, case_id, title, starts_at,
  duration_minutes, scheduled_by, participants: [{user, timezone, local_start}],
  attended: [user], minutes, recorded_at}]``; ``POST`` ``{title, starts_at (ISO 8601 with
  offset, in the future), duration_minutes}``; ``GET .../{meeting_id}/ics`` is
  ``text/calendar`` (RFC 5545); ``PUT .../{meeting_id}/record`` ``{attended: [user],
  minutes}``.

Outcome

* ``PUT /cases/{case_id}/outcome`` (panel lead) ``{diagnosis_code: "ORPHA:n",
  diagnosis_label, investigations: [str], treatment_plan, follow_up: "YYYY-MM-DD",
  summary}`` drafts or redrafts it (a redraft voids the signatures given).
* ``GET /cases/{case_id}/outcome`` - ``{case_id, version, drafted_by, drafted_at,
  diagnosis_code, diagnosis_label, investigations, treatment_plan, follow_up, summary,
  signed: bool, sha256 (of the canonical form), endorsements: [{signer, decision:
  endorse|dissent, reason, signed_at, signature, public_key}] (base64), pending: [user]}``
  (panel, the case's clinicians, the network's coordinators).
* ``GET /cases/{case_id}/outcome/pdf`` - the report as ``application/pdf`` (deterministic).
* ``POST /cases/{case_id}/outcome/endorsements`` ``{decision: endorse|dissent, reason,
  totp}`` signs with the member's Ed25519 key; ``totp`` is the member's current
  authenticator code (step-up: a stolen token alone cannot sign). A second signature by
  the same member is 409; when every active member has signed the case becomes
  ``outcome-signed`` and the owner is notified.

Everyone

* ``GET /notifications?unread=true`` - ``[{id, user, kind, case_id, link, created_at,
  read_at}]``; ``POST /notifications/{notification_id}/read``.
* ``PUT /accounts/{name}/expertise`` ``{expertise: [str], timezone}`` (helpdesk).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import fields
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from cpms_hub.domain import NotFoundError, Role, Urgency, ValidationError
from cpms_hub.domain.review import (
    MAX_REASON,
    MAX_TEXT,
    EndorsementDecision,
    Meeting,
    Outcome,
    OutcomeDraft,
    Panel,
    PanelMemberSpec,
    PanelRole,
    allowed_actions,
    canonical_json,
)
from cpms_hub.exports.outcome_report import meeting_ics, outcome_pdf
from cpms_hub.policy import Action, Actor, decide
from cpms_hub.state import State

from .case_access import audit_context, case_policy
from .models import ErrorOut

__all__ = ["REVIEW_ROUTES_DOC", "review_router"]

#: the routes this module adds (method, path below the API root), for ``ROUTES_DOC``
REVIEW_ROUTES_DOC: tuple[tuple[str, str], ...] = (
    ("GET", "/panels"),
    ("GET", "/experts"),
    ("PUT", "/cases/{case_id}/panel"),
    ("GET", "/cases/{case_id}/panel"),
    ("POST", "/cases/{case_id}/panel/{action}"),
    ("GET", "/invitations"),
    ("POST", "/cases/{case_id}/invitation/{answer}"),
    ("GET", "/cases/{case_id}/contributions"),
    ("GET", "/cases/{case_id}/contributions/mine"),
    ("PUT", "/cases/{case_id}/contributions/mine"),
    ("GET", "/cases/{case_id}/messages"),
    ("POST", "/cases/{case_id}/messages"),
    ("GET", "/cases/{case_id}/information-requests"),
    ("POST", "/cases/{case_id}/information-requests"),
    ("POST", "/cases/{case_id}/information-requests/{request_id}/answer"),
    ("GET", "/cases/{case_id}/meetings"),
    ("POST", "/cases/{case_id}/meetings"),
    ("GET", "/cases/{case_id}/meetings/{meeting_id}/ics"),
    ("PUT", "/cases/{case_id}/meetings/{meeting_id}/record"),
    ("PUT", "/cases/{case_id}/outcome"),
    ("GET", "/cases/{case_id}/outcome"),
    ("GET", "/cases/{case_id}/outcome/pdf"),
    ("POST", "/cases/{case_id}/outcome/endorsements"),
    ("GET", "/notifications"),
    ("POST", "/notifications/{notification_id}/read"),
    ("GET", "/reports/monitor"),
    ("GET", "/reports/activity"),
    ("PUT", "/accounts/{name}/expertise"),
)

_ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 403, 404, 409, 413, 422)}
_PRIVATE = {"Cache-Control": "private, no-store"}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemberIn(_In):
    user: str = Field(min_length=1, max_length=32)
    role: str = "member"


class PanelIn(_In):
    members: list[MemberIn] = Field(max_length=30)
    urgency: str = "routine"
    deadline: date
    invitation_days: int = Field(default=7, ge=1, le=60)


class ReasonIn(_In):
    reason: str = Field(default="", max_length=MAX_REASON)


class BodyIn(_In):
    body: str = Field(max_length=MAX_TEXT)


class MessageIn(_In):
    body: str = Field(max_length=MAX_TEXT)
    parent_id: str | None = Field(default=None, max_length=36)
    mentions: list[str] = Field(default_factory=list, max_length=30)


class QuestionIn(_In):
    question: str = Field(max_length=MAX_TEXT)


class AnswerIn(_In):
    answer: str = Field(max_length=MAX_TEXT)


class MeetingIn(_In):
    title: str = Field(max_length=200)
    starts_at: datetime
    duration_minutes: int = 60


class RecordIn(_In):
    attended: list[str] = Field(default_factory=list, max_length=30)
    minutes: str = Field(max_length=MAX_TEXT)


class OutcomeIn(_In):
    diagnosis_code: str = Field(max_length=20)
    diagnosis_label: str = Field(max_length=500)
    investigations: list[str] = Field(default_factory=list, max_length=50)
    treatment_plan: str = Field(max_length=MAX_TEXT)
    follow_up: date
    summary: str = Field(default="", max_length=MAX_TEXT)


class EndorsementIn(_In):
    decision: str = "endorse"
    reason: str = Field(default="", max_length=MAX_REASON)
    #: the member's current authenticator code (step-up)
    totp: str = Field(default="", max_length=16)
    #: the version read before signing; a newer one is a 409
    version: int | None = None


class ExpertiseIn(_In):
    expertise: list[str] = Field(max_length=50)
    timezone: str | None = Field(default=None, max_length=64)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _plain(value: Any) -> Any:
    """A field's value as JSON has it: dates in ISO 8601, enums by value, tuples as lists."""
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def record_json(record: Any) -> dict[str, Any]:
    """Every field of a review record (contribution, message, request for information,
    invitation, notification, panel summary), in the order it declares them: the
    routes answer with the record as the store gives it, nothing added or left out."""
    return {f.name: _plain(getattr(record, f.name)) for f in fields(record)}


def panel_json(p: Panel) -> dict[str, Any]:
    return {
        "case_id": p.case_id,
        "network": p.network,
        "status": p.status.value,
        "urgency": p.urgency.value,
        "deadline": p.deadline.isoformat(),
        "assembled_by": p.assembled_by,
        "assembled_at": _iso(p.assembled_at),
        "lead": p.lead,
        "allowed_actions": [a.value for a in allowed_actions(p.status)],
        "members": [
            {
                "user": m.user,
                "role": m.role.value,
                "status": m.status.value,
                "network": m.network,
                "invited_at": _iso(m.invited_at),
                "expires_at": _iso(m.expires_at),
                "responded_at": _iso(m.responded_at),
                "reason": m.reason,
            }
            for m in p.members
        ],
    }


def meeting_json(m: Meeting) -> dict[str, Any]:
    return {
        "id": m.id,
        "case_id": m.case_id,
        "title": m.title,
        "starts_at": _iso(m.starts_at),
        "duration_minutes": m.duration_minutes,
        "scheduled_by": m.scheduled_by,
        "participants": [
            {
                "user": user,
                "timezone": zone,
                "local_start": m.starts_at.astimezone(ZoneInfo(zone)).isoformat(),
            }
            for user, zone in m.participants
        ],
        "attended": list(m.attended),
        "minutes": m.minutes,
        "recorded_at": _iso(m.recorded_at),
    }


def outcome_json(o: Outcome, pending: list[str]) -> dict[str, Any]:
    return {
        **o.document(),
        "signed": o.signed,
        "sha256": hashlib.sha256(canonical_json(o.document())).hexdigest(),
        "endorsements": [
            {
                "signer": e.signer,
                "decision": e.decision.value,
                "reason": e.reason,
                "signed_at": _iso(e.signed_at),
                "signature": base64.b64encode(e.signature).decode(),
                "public_key": base64.b64encode(e.public_key).decode(),
            }
            for e in o.endorsements
        ],
        "pending": pending,
    }


async def _actor(request: Request) -> Actor:
    # the same dependency as the app's ActorDep (not imported: app.py imports this module)
    return await request.app.state.cpms_auth.actor(request)


ActorDep = Annotated[Actor, Depends(_actor)]


def review_router(api_root: str, state: State) -> APIRouter:
    """The panel review routes, over ``state.review`` and ``state.accounts``."""
    router = APIRouter(prefix=api_root, responses=_ERRORS, tags=["review"])
    review = state.review

    def as_(request: Request, actor: Actor, action: Action) -> dict[str, Any]:
        return {"authorize": case_policy(actor, action), "ctx": audit_context(request, actor.name)}

    def require(request: Request, actor: Actor, action: Action) -> None:
        decision = decide(actor, action)
        if not decision.allowed:
            state.cases.record_denial(
                audit_context(request, actor.name), action.value, decision.reasons
            )

    def either(actor: Actor, *actions: Action):  # noqa: ANN202
        """Allowed when any of ``actions`` is; the reasons of all when none is."""

        def check(ref):  # noqa: ANN001, ANN202
            decisions = [decide(actor, a, ref) for a in actions]
            for d in decisions:
                if d.allowed:
                    return d
            return type(decisions[0])(False, tuple(r for d in decisions for r in d.reasons))

        return check

    # -- coordination ----------------------------------------------------------

    @router.get("/panels")
    def list_panels(
        request: Request,
        actor: ActorDep,
        scope: Annotated[str, Query(pattern="^(mine|network)$")] = "mine",
    ) -> list[dict]:
        ctx = audit_context(request, actor.name)
        network = None
        if scope == "network":
            require(request, actor, Action.PANEL_REPORTS)
            network = actor.network
        out = review.list_panels(user=actor.name, network=network, scope=scope, ctx=ctx)
        return [record_json(p) for p in out]

    @router.get("/experts")
    def experts(
        request: Request,
        actor: ActorDep,
        q: Annotated[str, Query(max_length=100)] = "",
        network: Annotated[str | None, Query(max_length=200)] = None,
    ) -> list[dict]:
        """Panel members by expertise, name or hospital (guests from all networks)."""
        require(request, actor, Action.EXPERT_SEARCH)
        needle = q.strip().casefold()
        found = []
        for a in state.accounts.list():
            if not a.is_active or Role.PANEL_MEMBER not in a.roles:
                continue
            if network and a.network != network:
                continue
            hay = [a.name, a.full_name, a.hospital, *a.expertise]
            if needle and not any(needle in h.casefold() for h in hay):
                continue
            found.append(
                {
                    "name": a.name,
                    "full_name": a.full_name,
                    "hospital": a.hospital,
                    "network": a.network,
                    "expertise": list(a.expertise),
                    "timezone": a.timezone,
                }
            )
        return found

    @router.put("/cases/{case_id}/panel")
    def assemble(case_id: str, body: PanelIn, request: Request, actor: ActorDep) -> dict:
        try:
            urgency = Urgency(body.urgency)
        except ValueError:
            raise ValidationError(
                "urgency", f"must be one of {', '.join(u.value for u in Urgency)}"
            ) from None
        members = [PanelMemberSpec(m.user, PanelRole(_role(m.role))) for m in body.members]
        panel = review.assemble(
            case_id,
            members,
            urgency=urgency,
            deadline=body.deadline,
            invitation_days=body.invitation_days,
            **as_(request, actor, Action.PANEL_ASSEMBLE),
        )
        return panel_json(panel)

    @router.get("/cases/{case_id}/panel")
    def get_panel(case_id: str, request: Request, actor: ActorDep) -> dict:
        coordinates = Role.COORDINATOR in actor.roles
        panel = review.panel(
            case_id,
            with_reasons=coordinates,
            **as_(request, actor, Action.PANEL_VIEW),
        )
        data = panel_json(panel)
        if not (coordinates and panel.network == actor.network):
            # why someone declined is for the coordinator only
            for m in data["members"]:
                m["reason"] = ""
        return data

    @router.post("/cases/{case_id}/panel/{action}")
    def panel_action(case_id: str, action: str, request: Request, actor: ActorDep) -> dict:
        if action == "start-discussion":
            authorize = either(actor, Action.PANEL_MANAGE, Action.REVIEW_WRITE)
        else:
            authorize = case_policy(actor, Action.PANEL_MANAGE)
        panel = review.panel_action(
            case_id, action, authorize=authorize, ctx=audit_context(request, actor.name)
        )
        return panel_json(panel)

    @router.get("/reports/monitor")
    def monitor(request: Request, actor: ActorDep) -> dict:
        require(request, actor, Action.PANEL_REPORTS)
        out = review.monitor(actor.network, ctx=audit_context(request, actor.name))
        return {k: [record_json(p) for p in v] for k, v in out.items()}

    @router.get("/reports/activity")
    def activity(request: Request, actor: ActorDep) -> dict:
        require(request, actor, Action.PANEL_REPORTS)
        return review.activity(network=actor.network, ctx=audit_context(request, actor.name))

    @router.put("/accounts/{name}/expertise")
    def set_expertise(name: str, body: ExpertiseIn, request: Request, actor: ActorDep) -> dict:
        require(request, actor, Action.ACCOUNT_MANAGE)
        a = state.accounts.set_profile(
            name, by=actor.name, expertise=body.expertise, timezone=body.timezone
        )
        return {
            "name": a.name,
            "network": a.network,
            "expertise": list(a.expertise),
            "timezone": a.timezone,
        }

    # -- invitations -----------------------------------------------------------

    @router.get("/invitations")
    def invitations(actor: ActorDep) -> list[dict]:
        return [record_json(i) for i in review.invitations(actor.name)]

    @router.post("/cases/{case_id}/invitation/{answer}")
    def respond(
        case_id: str, answer: str, body: ReasonIn, request: Request, actor: ActorDep
    ) -> dict:
        if answer not in ("accept", "decline"):
            raise ValidationError("answer", "must be accept or decline")
        inv = review.respond(
            case_id,
            accept=answer == "accept",
            reason=body.reason,
            **as_(request, actor, Action.REVIEW_WRITE),
        )
        return record_json(inv)

    # -- contributions and discussion ------------------------------------------

    @router.get("/cases/{case_id}/contributions")
    def contributions(case_id: str, request: Request, actor: ActorDep) -> list[dict]:
        out = review.contributions(case_id, **as_(request, actor, Action.REVIEW_READ))
        return [record_json(c) for c in out]

    @router.get("/cases/{case_id}/contributions/mine")
    def my_contribution(case_id: str, request: Request, actor: ActorDep) -> dict:
        out = review.contributions(case_id, mine=True, **as_(request, actor, Action.REVIEW_READ))
        if not out:
            raise NotFoundError("you have not written a contribution to this case yet")
        return record_json(out[0])

    @router.put("/cases/{case_id}/contributions/mine")
    def put_contribution(case_id: str, body: BodyIn, request: Request, actor: ActorDep) -> dict:
        c = review.put_contribution(case_id, body.body, **as_(request, actor, Action.REVIEW_WRITE))
        return record_json(c)

    @router.get("/cases/{case_id}/messages")
    def messages(case_id: str, request: Request, actor: ActorDep) -> list[dict]:
        out = review.messages(case_id, **as_(request, actor, Action.REVIEW_READ))
        return [record_json(m) for m in out]

    @router.post("/cases/{case_id}/messages", status_code=201)
    def post_message(case_id: str, body: MessageIn, request: Request, actor: ActorDep) -> dict:
        m = review.post_message(
            case_id,
            body.body,
            parent_id=body.parent_id,
            mentions=body.mentions,
            **as_(request, actor, Action.REVIEW_WRITE),
        )
        return record_json(m)

    # -- requests for information ----------------------------------------------

    @router.get("/cases/{case_id}/information-requests")
    def info_requests(case_id: str, request: Request, actor: ActorDep) -> list[dict]:
        out = review.information_requests(case_id, **as_(request, actor, Action.INFO_READ))
        return [record_json(r) for r in out]

    @router.post("/cases/{case_id}/information-requests", status_code=201)
    def ask(case_id: str, body: QuestionIn, request: Request, actor: ActorDep) -> dict:
        r = review.request_information(
            case_id, body.question, **as_(request, actor, Action.REVIEW_WRITE)
        )
        return record_json(r)

    @router.post("/cases/{case_id}/information-requests/{request_id}/answer")
    def answer(
        case_id: str, request_id: str, body: AnswerIn, request: Request, actor: ActorDep
    ) -> dict:
        r = review.answer_information(
            case_id, request_id, body.answer, **as_(request, actor, Action.INFO_ANSWER)
        )
        return record_json(r)

    # -- meetings --------------------------------------------------------------

    @router.get("/cases/{case_id}/meetings")
    def meetings(case_id: str, request: Request, actor: ActorDep) -> list[dict]:
        out = review.meetings(case_id, **as_(request, actor, Action.REVIEW_READ))
        return [meeting_json(m) for m in out]

    @router.post("/cases/{case_id}/meetings", status_code=201)
    def schedule(case_id: str, body: MeetingIn, request: Request, actor: ActorDep) -> dict:
        m = review.schedule_meeting(
            case_id,
            title=body.title,
            starts_at=body.starts_at,
            duration_minutes=body.duration_minutes,
            **as_(request, actor, Action.REVIEW_WRITE),
        )
        return meeting_json(m)

    @router.get("/cases/{case_id}/meetings/{meeting_id}/ics")
    def ics(case_id: str, meeting_id: str, request: Request, actor: ActorDep) -> Response:
        m = review.meeting(case_id, meeting_id, **as_(request, actor, Action.REVIEW_READ))
        return Response(
            meeting_ics(m, link=review.link_base + f"?case={case_id}"),
            media_type="text/calendar",
            headers={**_PRIVATE, "Content-Disposition": 'attachment; filename="meeting.ics"'},
        )

    @router.put("/cases/{case_id}/meetings/{meeting_id}/record")
    def record(
        case_id: str, meeting_id: str, body: RecordIn, request: Request, actor: ActorDep
    ) -> dict:
        m = review.record_meeting(
            case_id,
            meeting_id,
            attended=body.attended,
            minutes=body.minutes,
            **as_(request, actor, Action.REVIEW_WRITE),
        )
        return meeting_json(m)

    # -- the outcome -----------------------------------------------------------

    @router.put("/cases/{case_id}/outcome")
    def draft_outcome(case_id: str, body: OutcomeIn, request: Request, actor: ActorDep) -> dict:
        draft = OutcomeDraft(
            diagnosis_code=body.diagnosis_code,
            diagnosis_label=body.diagnosis_label,
            investigations=tuple(body.investigations),
            treatment_plan=body.treatment_plan,
            follow_up=body.follow_up,
            summary=body.summary,
        )
        out, pending = review.draft_outcome(
            case_id, draft, **as_(request, actor, Action.REVIEW_WRITE)
        )
        return outcome_json(out, pending)

    @router.get("/cases/{case_id}/outcome")
    def get_outcome(case_id: str, request: Request, actor: ActorDep) -> dict:
        out, pending = review.outcome(case_id, **as_(request, actor, Action.OUTCOME_READ))
        return outcome_json(out, pending)

    @router.get("/cases/{case_id}/outcome/pdf")
    def get_outcome_pdf(case_id: str, request: Request, actor: ActorDep) -> Response:
        out, pending = review.outcome(case_id, **as_(request, actor, Action.OUTCOME_READ))
        ref = state.cases.case_ref(case_id)
        return Response(
            outcome_pdf(out, network=ref.network, pending=pending),
            media_type="application/pdf",
            headers={**_PRIVATE, "Content-Disposition": 'attachment; filename="outcome.pdf"'},
        )

    @router.post("/cases/{case_id}/outcome/endorsements", status_code=201)
    def endorse(case_id: str, body: EndorsementIn, request: Request, actor: ActorDep) -> dict:
        try:
            decision = EndorsementDecision(body.decision)
        except ValueError:
            raise ValidationError("decision", "must be endorse or dissent") from None
        ctx = audit_context(request, actor.name)
        # the policy first (a non-member learns nothing of the step-up), then the code
        ref = state.cases.case_ref(case_id)
        verdict = decide(actor, Action.REVIEW_WRITE, ref)
        if not verdict.allowed:
            state.cases.record_denial(ctx, "outcome.endorse", verdict.reasons, case_id)
        state.accounts.verify_step_up(actor.name, body.totp, client=ctx.client)
        out, pending = review.endorse(
            case_id,
            decision=decision,
            reason=body.reason,
            version=body.version,
            authorize=case_policy(actor, Action.REVIEW_WRITE),
            ctx=ctx,
        )
        return outcome_json(out, pending)

    # -- notifications ---------------------------------------------------------

    @router.get("/notifications")
    def notifications(actor: ActorDep, unread: bool = False) -> list[dict]:
        return [record_json(n) for n in review.notifications(actor.name, unread=unread)]

    @router.post("/notifications/{notification_id}/read")
    def mark_read(notification_id: str, actor: ActorDep) -> dict:
        return record_json(review.mark_read(actor.name, notification_id))

    return router


def _role(value: str) -> str:
    if value not in {r.value for r in PanelRole}:
        raise ValidationError(
            "members.role", f"must be one of {', '.join(r.value for r in PanelRole)}"
        )
    return value
