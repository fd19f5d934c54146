"""Panel review from Python: the methods :class:`~cpms_widgets.client.CaseStoreClient`
inherits for panels, invitations, contributions, discussion, information requests,
meetings, the outcome and the notification inbox.

Each method is one call of the routes documented in
:mod:`cpms_hub.service.review_routes` and returns :mod:`cpms_hub.domain.review`
objects (reports stay dicts: they are tables for pandas or charts). A case owner
answers a panel's request for more information from a notebook with
:meth:`ReviewClientMixin.answer_information_request` and reads the signed outcome
with :meth:`ReviewClientMixin.outcome` / :meth:`ReviewClientMixin.outcome_pdf`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from cpms_hub.domain import CaseStatus, NotFoundError, Urgency
from cpms_hub.domain.followup import FollowUp, FollowUpDraft, FollowUpResult, TreatmentCategory
from cpms_hub.domain.review import (
    Contribution,
    Endorsement,
    EndorsementDecision,
    InformationRequest,
    Invitation,
    InvitationStatus,
    Meeting,
    Message,
    Notification,
    NotificationKind,
    Outcome,
    OutcomeDraft,
    Panel,
    PanelMember,
    PanelMemberSpec,
    PanelRole,
)

__all__ = ["ReviewClientMixin"]


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _panel(d: dict[str, Any]) -> Panel:
    return Panel(
        case_id=d["case_id"],
        network=d["network"],
        urgency=Urgency(d["urgency"]),
        deadline=date.fromisoformat(d["deadline"]),
        members=tuple(
            PanelMember(
                user=m["user"],
                role=PanelRole(m["role"]),
                status=InvitationStatus(m["status"]),
                invited_at=_dt(m["invited_at"]),
                expires_at=_dt(m["expires_at"]),
                network=m.get("network", ""),
                responded_at=_dt(m.get("responded_at")),
                reason=m.get("reason") or "",
            )
            for m in d["members"]
        ),
        assembled_by=d["assembled_by"],
        assembled_at=_dt(d["assembled_at"]),
        status=CaseStatus(d["status"]),
    )


def _invitation(d: dict[str, Any]) -> Invitation:
    return Invitation(
        case_id=d["case_id"],
        network=d["network"],
        role=PanelRole(d["role"]),
        status=InvitationStatus(d["status"]),
        urgency=Urgency(d["urgency"]),
        deadline=date.fromisoformat(d["deadline"]),
        invited_by=d["invited_by"],
        invited_at=_dt(d["invited_at"]),
        expires_at=_dt(d["expires_at"]),
    )


def _contribution(d: dict[str, Any]) -> Contribution:
    return Contribution(
        d["id"], d["case_id"], d["author"], d["body"], _dt(d["created_at"]), _dt(d["updated_at"])
    )


def _message(d: dict[str, Any]) -> Message:
    return Message(
        id=d["id"],
        case_id=d["case_id"],
        author=d["author"],
        body=d["body"],
        created_at=_dt(d["created_at"]),
        parent_id=d.get("parent_id"),
        mentions=tuple(d.get("mentions") or ()),
    )


def _request(d: dict[str, Any]) -> InformationRequest:
    return InformationRequest(
        id=d["id"],
        case_id=d["case_id"],
        asked_by=d["asked_by"],
        question=d["question"],
        asked_at=_dt(d["asked_at"]),
        answer=d.get("answer"),
        answered_by=d.get("answered_by"),
        answered_at=_dt(d.get("answered_at")),
    )


def _meeting(d: dict[str, Any]) -> Meeting:
    return Meeting(
        id=d["id"],
        case_id=d["case_id"],
        title=d["title"],
        starts_at=_dt(d["starts_at"]),
        duration_minutes=d["duration_minutes"],
        scheduled_by=d["scheduled_by"],
        participants=tuple((p["user"], p["timezone"]) for p in d.get("participants", [])),
        attended=tuple(d.get("attended") or ()),
        minutes=d.get("minutes"),
        recorded_at=_dt(d.get("recorded_at")),
    )


def _outcome(d: dict[str, Any]) -> Outcome:
    return Outcome(
        case_id=d["case_id"],
        version=d["version"],
        draft=OutcomeDraft.from_json(d),
        drafted_by=d["drafted_by"],
        drafted_at=_dt(d["drafted_at"]),
        endorsements=tuple(
            Endorsement(
                case_id=d["case_id"],
                version=d["version"],
                signer=e["signer"],
                decision=EndorsementDecision(e["decision"]),
                reason=e.get("reason") or "",
                signed_at=_dt(e["signed_at"]),
                signature=base64.b64decode(e["signature"]),
                public_key=base64.b64decode(e["public_key"]),
            )
            for e in d.get("endorsements", [])
        ),
        signed=bool(d.get("signed")),
    )


def _notification(d: dict[str, Any]) -> Notification:
    return Notification(
        id=d["id"],
        user=d["user"],
        kind=NotificationKind(d["kind"]),
        case_id=d.get("case_id"),
        link=d["link"],
        created_at=_dt(d["created_at"]),
        read_at=_dt(d.get("read_at")),
    )


def _follow_up(d: dict[str, Any]) -> FollowUp:
    return FollowUp(
        case_id=d["case_id"],
        draft=FollowUpDraft.from_json(d),
        recorded_by=d["recorded_by"],
        recorded_at=datetime.fromisoformat(d["recorded_at"]),
    )


class ReviewClientMixin:
    """Panel review methods; needs ``_request`` and ``_http`` from the client."""

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    # -- coordination ----------------------------------------------------------

    def list_panels(self, scope: str = "mine") -> list[dict[str, Any]]:
        """Panel summaries: ``mine`` (panels I am on or own) or ``network`` (coordinators)."""
        return self._request("GET", "/panels", params={"scope": scope})

    def search_experts(self, q: str = "", network: str | None = None) -> list[dict[str, Any]]:
        params = {"q": q}
        if network:
            params["network"] = network
        return self._request("GET", "/experts", params=params)

    def assemble_panel(
        self,
        case_id: str,
        members: Iterable[PanelMemberSpec | tuple[str, str] | dict[str, str]],
        *,
        urgency: Urgency | str = Urgency.ROUTINE,
        deadline: date,
        invitation_days: int = 7,
    ) -> Panel:
        specs = []
        for m in members:
            if isinstance(m, PanelMemberSpec):
                specs.append({"user": m.user, "role": m.role.value})
            elif isinstance(m, dict):
                specs.append({"user": m["user"], "role": m.get("role", "member")})
            else:
                specs.append({"user": m[0], "role": m[1]})
        body = {
            "members": specs,
            "urgency": Urgency(urgency).value,
            "deadline": deadline.isoformat(),
            "invitation_days": invitation_days,
        }
        return _panel(self._request("PUT", f"/cases/{case_id}/panel", json=body))

    def get_panel(self, case_id: str) -> Panel:
        return _panel(self._request("GET", f"/cases/{case_id}/panel"))

    def panel_action(self, case_id: str, action: str) -> Panel:
        """``start-discussion``, ``close`` or ``reopen`` (409 when the lifecycle forbids it)."""
        return _panel(self._request("POST", f"/cases/{case_id}/panel/{action}"))

    def start_discussion(self, case_id: str) -> Panel:
        return self.panel_action(case_id, "start-discussion")

    def close_panel(self, case_id: str) -> Panel:
        return self.panel_action(case_id, "close")

    def reopen_panel(self, case_id: str) -> Panel:
        return self.panel_action(case_id, "reopen")

    def monitor_report(self) -> dict[str, Any]:
        return self._request("GET", "/reports/monitor")

    def activity_report(self) -> dict[str, Any]:
        return self._request("GET", "/reports/activity")

    def set_expertise(
        self, name: str, expertise: Iterable[str], timezone: str | None = None
    ) -> dict[str, Any]:
        """Helpdesk: the expertise (ORPHA codes, specialties) and time zone of an account."""
        body: dict[str, Any] = {"expertise": list(expertise)}
        if timezone is not None:
            body["timezone"] = timezone
        return self._request("PUT", f"/accounts/{name}/expertise", json=body)

    # -- invitations -----------------------------------------------------------

    def invitations(self) -> list[Invitation]:
        return [_invitation(d) for d in self._request("GET", "/invitations")]

    def accept_invitation(self, case_id: str) -> Invitation:
        return _invitation(
            self._request("POST", f"/cases/{case_id}/invitation/accept", json={"reason": ""})
        )

    def decline_invitation(self, case_id: str, reason: str) -> Invitation:
        return _invitation(
            self._request("POST", f"/cases/{case_id}/invitation/decline", json={"reason": reason})
        )

    # -- contributions and discussion ------------------------------------------

    def contributions(self, case_id: str) -> list[Contribution]:
        return [_contribution(d) for d in self._request("GET", f"/cases/{case_id}/contributions")]

    def my_contribution(self, case_id: str) -> Contribution | None:
        try:
            return _contribution(self._request("GET", f"/cases/{case_id}/contributions/mine"))
        except NotFoundError:
            return None

    def contribute(self, case_id: str, body: str) -> Contribution:
        """Write (or rewrite) my opinion on the case."""
        return _contribution(
            self._request("PUT", f"/cases/{case_id}/contributions/mine", json={"body": body})
        )

    def messages(self, case_id: str) -> list[Message]:
        return [_message(d) for d in self._request("GET", f"/cases/{case_id}/messages")]

    def post_message(
        self,
        case_id: str,
        body: str,
        *,
        parent_id: str | None = None,
        mentions: Iterable[str] = (),
    ) -> Message:
        payload = {"body": body, "parent_id": parent_id, "mentions": list(mentions)}
        return _message(self._request("POST", f"/cases/{case_id}/messages", json=payload))

    # -- requests for information ----------------------------------------------

    def information_requests(self, case_id: str) -> list[InformationRequest]:
        return [
            _request(d) for d in self._request("GET", f"/cases/{case_id}/information-requests")
        ]

    def request_information(self, case_id: str, question: str) -> InformationRequest:
        return _request(
            self._request(
                "POST", f"/cases/{case_id}/information-requests", json={"question": question}
            )
        )

    def answer_information_request(
        self, case_id: str, request_id: str, answer: str
    ) -> InformationRequest:
        """The case owner's answer to a panel's question."""
        return _request(
            self._request(
                "POST",
                f"/cases/{case_id}/information-requests/{request_id}/answer",
                json={"answer": answer},
            )
        )

    # -- meetings --------------------------------------------------------------

    def meetings(self, case_id: str) -> list[Meeting]:
        return [_meeting(d) for d in self._request("GET", f"/cases/{case_id}/meetings")]

    def schedule_meeting(
        self, case_id: str, title: str, starts_at: datetime, duration_minutes: int = 60
    ) -> Meeting:
        body = {
            "title": title,
            "starts_at": starts_at.isoformat(),
            "duration_minutes": duration_minutes,
        }
        return _meeting(self._request("POST", f"/cases/{case_id}/meetings", json=body))

    def meeting_ics(self, case_id: str, meeting_id: str) -> str:
        resp = self._http.get(f"/cases/{case_id}/meetings/{meeting_id}/ics")
        self._raise_for(resp)
        return resp.text

    def record_meeting(
        self, case_id: str, meeting_id: str, attended: Iterable[str], minutes: str
    ) -> Meeting:
        body = {"attended": list(attended), "minutes": minutes}
        return _meeting(
            self._request("PUT", f"/cases/{case_id}/meetings/{meeting_id}/record", json=body)
        )

    # -- the outcome -----------------------------------------------------------

    def draft_outcome(self, case_id: str, draft: OutcomeDraft) -> Outcome:
        """The panel lead writes (or rewrites) the recommendation."""
        return _outcome(self._request("PUT", f"/cases/{case_id}/outcome", json=draft.to_json()))

    def outcome(self, case_id: str) -> Outcome | None:
        """The panel's outcome with its signatures (None before one is drafted)."""
        try:
            return _outcome(self._request("GET", f"/cases/{case_id}/outcome"))
        except NotFoundError:
            return None

    def outcome_json(self, case_id: str) -> dict[str, Any]:
        """The outcome as the service sends it (with ``sha256`` and ``pending``)."""
        return self._request("GET", f"/cases/{case_id}/outcome")

    def outcome_pdf(
        self, case_id: str, dest: str | os.PathLike[str] | None = None
    ) -> bytes | Path:
        """The outcome report as PDF bytes, or written to ``dest`` (then its path)."""
        resp = self._http.get(f"/cases/{case_id}/outcome/pdf")
        self._raise_for(resp)
        if dest is None:
            return resp.content
        path = Path(dest)
        path.write_bytes(resp.content)
        return path

    def endorse_outcome(
        self,
        case_id: str,
        *,
        totp: str,
        decision: EndorsementDecision | str = EndorsementDecision.ENDORSE,
        reason: str = "",
    ) -> Outcome:
        """Sign the drafted outcome (``totp``: my authenticator's current code)."""
        body = {
            "decision": EndorsementDecision(decision).value,
            "reason": reason,
            "totp": totp,
        }
        return _outcome(
            self._request("POST", f"/cases/{case_id}/outcome/endorsements", json=body)
        )

    # -- follow-up -------------------------------------------------------------

    def record_follow_up(
        self,
        case_id: str,
        treatment: TreatmentCategory | str,
        result: FollowUpResult | str,
    ) -> FollowUp:
        """Record what became of the patient after the signed outcome (owner, assistants):
        the category of treatment followed and the result, both coded."""
        body = FollowUpDraft(treatment=treatment, result=result).to_json()
        return _follow_up(self._request("PUT", f"/cases/{case_id}/follow-up", json=body))

    def follow_up(self, case_id: str) -> FollowUp | None:
        """The case's follow-up record (None before one is recorded)."""
        try:
            return _follow_up(self._request("GET", f"/cases/{case_id}/follow-up"))
        except NotFoundError:
            return None

    # -- notifications ---------------------------------------------------------

    def notifications(self, *, unread: bool = False) -> list[Notification]:
        params = {"unread": "true"} if unread else {}
        return [_notification(d) for d in self._request("GET", "/notifications", params=params)]

    def mark_notification_read(self, notification_id: str) -> Notification:
        return _notification(self._request("POST", f"/notifications/{notification_id}/read"))
