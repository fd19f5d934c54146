"""Panel review: who reviews a case, what they write, and the outcome they sign.

A coordinator assembles a *panel* for a submitted case: a lead, members and
guest experts (who may come from other networks). Each person is invited
(:class:`Invitation`), accepts or declines with a reason, writes one
:class:`Contribution` (their opinion, editable until the outcome is drafted),
takes part in a threaded discussion (:class:`Message`, with mentions), may ask
the case owner for more information (:class:`InformationRequest`), and meets
(:class:`Meeting`). The lead drafts the :class:`Outcome` (an ORPHA-coded
diagnosis, recommended investigations, a treatment plan, a follow-up date);
each member endorses it or dissents (:class:`Endorsement`), each an Ed25519
signature over the outcome's canonical form (:func:`canonical_json`). When
everyone has signed, the outcome is *signed* and goes back to the owner.

The lifecycle of the case is one table, :data:`TRANSITIONS`: every pair of
:class:`~cpms_hub.domain.CaseStatus` and :class:`LifecycleAction` is either in
it (and leads to a state) or refused with a reason by :func:`transition`. The
store consults it for every step, so no user interface can skip one.

Contributions, messages, requests, minutes and outcomes are patient data (the
store keeps them encrypted); user names, roles, dates and states are not.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from .cases import CaseStatus
from .clinical import ORPHA_CODE, Urgency
from .errors import ConflictError, ValidationError

__all__ = [
    "PanelRole",
    "InvitationStatus",
    "EndorsementDecision",
    "LifecycleAction",
    "TRANSITIONS",
    "transition",
    "allowed_actions",
    "PanelMemberSpec",
    "PanelMember",
    "Panel",
    "Invitation",
    "Contribution",
    "Message",
    "InformationRequest",
    "Meeting",
    "OutcomeDraft",
    "Outcome",
    "Endorsement",
    "NotificationKind",
    "Notification",
    "canonical_json",
    "signed_statement",
    "MAX_TEXT",
    "MAX_REASON",
]

#: longest contribution, message, answer, minutes or outcome text (characters)
MAX_TEXT = 20_000
#: longest reason (declining, dissenting)
MAX_REASON = 2_000
_USER = re.compile(r"^[a-z][a-z0-9-]{1,30}$")


def _text(value: object, name: str, *, max_len: int = MAX_TEXT, required: bool = True) -> str:
    if not isinstance(value, str):
        raise ValidationError(name, "must be text")
    if required and not value.strip():
        raise ValidationError(name, "must not be empty")
    if len(value) > max_len:
        raise ValidationError(name, f"must be at most {max_len} characters")
    return value


def _user(value: object, name: str) -> str:
    if not isinstance(value, str) or not _USER.match(value):
        raise ValidationError(name, "must be a user name")
    return value


class PanelRole(StrEnum):
    """A person's part in one panel."""

    LEAD = "lead"
    MEMBER = "member"
    #: an expert from outside the network, invited for this case
    GUEST = "guest"


class InvitationStatus(StrEnum):
    INVITED = "invited"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"


class EndorsementDecision(StrEnum):
    ENDORSE = "endorse"
    DISSENT = "dissent"


class LifecycleAction(StrEnum):
    """Every step that depends on, or moves, the case's lifecycle state."""

    SUBMIT = "submit"
    ASSEMBLE = "assemble"
    START_DISCUSSION = "start-discussion"
    RESPOND_INVITATION = "respond-invitation"
    CONTRIBUTE = "contribute"
    DISCUSS = "discuss"
    REQUEST_INFORMATION = "request-information"
    ANSWER_INFORMATION = "answer-information"
    SCHEDULE_MEETING = "schedule-meeting"
    DRAFT_OUTCOME = "draft-outcome"
    ENDORSE = "endorse"
    #: taken by the store when the last member has signed
    SEAL_OUTCOME = "seal-outcome"
    CLOSE = "close"
    REOPEN = "reopen"


_S = CaseStatus
_A = LifecycleAction
#: states in which the panel works on the case
_WORKING = (_S.PANEL_ASSEMBLED, _S.IN_DISCUSSION, _S.OUTCOME_DRAFTED, _S.REOPENED)

#: (state, action) -> the state after it. Pairs not listed are refused (409).
TRANSITIONS: dict[tuple[CaseStatus, LifecycleAction], CaseStatus] = {
    (_S.DRAFT, _A.SUBMIT): _S.SUBMITTED,
    (_S.SUBMITTED, _A.ASSEMBLE): _S.PANEL_ASSEMBLED,
    # the panel can be changed (members added or replaced) until the outcome is drafted
    (_S.PANEL_ASSEMBLED, _A.ASSEMBLE): _S.PANEL_ASSEMBLED,
    (_S.IN_DISCUSSION, _A.ASSEMBLE): _S.IN_DISCUSSION,
    (_S.REOPENED, _A.ASSEMBLE): _S.REOPENED,
    (_S.PANEL_ASSEMBLED, _A.START_DISCUSSION): _S.IN_DISCUSSION,
    (_S.REOPENED, _A.START_DISCUSSION): _S.IN_DISCUSSION,
    **{(s, _A.RESPOND_INVITATION): s for s in (_S.PANEL_ASSEMBLED, _S.IN_DISCUSSION, _S.REOPENED)},
    # the first opinion or message starts the discussion
    (_S.PANEL_ASSEMBLED, _A.CONTRIBUTE): _S.IN_DISCUSSION,
    (_S.IN_DISCUSSION, _A.CONTRIBUTE): _S.IN_DISCUSSION,
    (_S.REOPENED, _A.CONTRIBUTE): _S.IN_DISCUSSION,
    (_S.PANEL_ASSEMBLED, _A.DISCUSS): _S.IN_DISCUSSION,
    (_S.IN_DISCUSSION, _A.DISCUSS): _S.IN_DISCUSSION,
    (_S.OUTCOME_DRAFTED, _A.DISCUSS): _S.OUTCOME_DRAFTED,
    (_S.REOPENED, _A.DISCUSS): _S.IN_DISCUSSION,
    **{(s, _A.REQUEST_INFORMATION): s for s in _WORKING},
    **{(s, _A.ANSWER_INFORMATION): s for s in _WORKING},
    **{(s, _A.SCHEDULE_MEETING): s for s in _WORKING},
    (_S.IN_DISCUSSION, _A.DRAFT_OUTCOME): _S.OUTCOME_DRAFTED,
    # a redraft replaces the outcome and voids the signatures already given
    (_S.OUTCOME_DRAFTED, _A.DRAFT_OUTCOME): _S.OUTCOME_DRAFTED,
    (_S.OUTCOME_DRAFTED, _A.ENDORSE): _S.OUTCOME_DRAFTED,
    (_S.OUTCOME_DRAFTED, _A.SEAL_OUTCOME): _S.OUTCOME_SIGNED,
    **{(s, _A.CLOSE): _S.CLOSED for s in (*_WORKING, _S.OUTCOME_SIGNED)},
    (_S.CLOSED, _A.REOPEN): _S.REOPENED,
}

#: why a refused step is refused, by action (the state is named as well)
_NEEDS: dict[LifecycleAction, str] = {
    _A.SUBMIT: "only drafts are submitted",
    _A.ASSEMBLE: "a panel is assembled for a submitted case, and changed only until "
    "the outcome is drafted",
    _A.START_DISCUSSION: "the discussion starts once a panel is assembled",
    _A.RESPOND_INVITATION: "invitations are answered while the panel is forming or discussing",
    _A.CONTRIBUTE: "contributions are written while the panel discusses, and are frozen "
    "once the outcome is drafted",
    _A.DISCUSS: "messages are posted while the panel works on the case",
    _A.REQUEST_INFORMATION: "information is requested while the panel works on the case",
    _A.ANSWER_INFORMATION: "requests are answered while the panel works on the case",
    _A.SCHEDULE_MEETING: "meetings are held while the panel works on the case",
    _A.DRAFT_OUTCOME: "the outcome is drafted during the discussion, before it is signed",
    _A.ENDORSE: "only a drafted outcome is endorsed",
    _A.SEAL_OUTCOME: "only a drafted outcome is sealed",
    _A.CLOSE: "a panel is closed once it exists, and only once",
    _A.REOPEN: "only a closed case is reopened",
}


def transition(state: CaseStatus, action: LifecycleAction) -> CaseStatus:
    """The state after ``action``, or :class:`ConflictError` (409) saying why not."""
    state, action = CaseStatus(state), LifecycleAction(action)
    after = TRANSITIONS.get((state, action))
    if after is None:
        raise ConflictError(
            f"cannot {action.value} a case that is {state.value}",
            reasons=(f"cannot {action.value} a case that is {state.value}: {_NEEDS[action]}",),
        )
    return after


def allowed_actions(state: CaseStatus) -> tuple[LifecycleAction, ...]:
    """The lifecycle actions possible in ``state`` (for user interfaces)."""
    return tuple(a for a in LifecycleAction if (CaseStatus(state), a) in TRANSITIONS)


# -- the panel -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PanelMemberSpec:
    """One person a coordinator puts on a panel."""

    user: str
    role: PanelRole = PanelRole.MEMBER

    def __post_init__(self) -> None:
        _user(self.user, "members.user")
        try:
            object.__setattr__(self, "role", PanelRole(self.role))
        except ValueError:
            raise ValidationError(
                "members.role", f"must be one of {', '.join(r.value for r in PanelRole)}"
            ) from None


@dataclass(frozen=True, slots=True)
class PanelMember:
    """A person on a panel and where their invitation stands."""

    user: str
    role: PanelRole
    status: InvitationStatus
    invited_at: datetime
    expires_at: datetime
    network: str = ""
    responded_at: datetime | None = None
    #: given when declining; may be read by the coordinator only
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Panel:
    """The panel of one case."""

    case_id: str
    network: str
    urgency: Urgency
    deadline: date
    members: tuple[PanelMember, ...]
    assembled_by: str
    assembled_at: datetime
    status: CaseStatus

    @property
    def lead(self) -> str | None:
        return next((m.user for m in self.members if m.role is PanelRole.LEAD), None)

    def member(self, user: str) -> PanelMember | None:
        return next((m for m in self.members if m.user == user), None)

    @property
    def active(self) -> tuple[PanelMember, ...]:
        """Those who may contribute and sign: invited or accepted, not declined/expired."""
        return tuple(
            m
            for m in self.members
            if m.status in (InvitationStatus.INVITED, InvitationStatus.ACCEPTED)
        )


@dataclass(frozen=True, slots=True)
class Invitation:
    """An invitation in a member's inbox (no clinical content)."""

    case_id: str
    network: str
    role: PanelRole
    status: InvitationStatus
    urgency: Urgency
    deadline: date
    invited_by: str
    invited_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Contribution:
    """One expert's written opinion on a case."""

    id: str
    case_id: str
    author: str
    body: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Message:
    """A message of the panel's discussion; ``parent_id`` makes threads."""

    id: str
    case_id: str
    author: str
    body: str
    created_at: datetime
    parent_id: str | None = None
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InformationRequest:
    """A panel's question to the case owner, and the answer."""

    id: str
    case_id: str
    asked_by: str
    question: str
    asked_at: datetime
    answer: str | None = None
    answered_by: str | None = None
    answered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Meeting:
    """A panel meeting (times in UTC; participants' time zones are shown beside)."""

    id: str
    case_id: str
    title: str
    starts_at: datetime
    duration_minutes: int
    scheduled_by: str
    #: user -> IANA time zone, for showing the time to each participant
    participants: tuple[tuple[str, str], ...] = ()
    attended: tuple[str, ...] = ()
    minutes: str | None = None
    recorded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OutcomeDraft:
    """What the panel lead writes: the recommendation, validated on construction."""

    diagnosis_code: str
    diagnosis_label: str
    investigations: tuple[str, ...]
    treatment_plan: str
    follow_up: date
    summary: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.diagnosis_code, str) or not ORPHA_CODE.match(self.diagnosis_code):
            raise ValidationError("diagnosis_code", "must be an Orphanet code like ORPHA:558")
        _text(self.diagnosis_label, "diagnosis_label", max_len=500)
        if isinstance(self.investigations, str) or not isinstance(
            self.investigations, (list, tuple)
        ):
            raise ValidationError("investigations", "must be a list of texts")
        object.__setattr__(self, "investigations", tuple(self.investigations))
        for item in self.investigations:
            _text(item, "investigations", max_len=1000)
        _text(self.treatment_plan, "treatment_plan")
        _text(self.summary, "summary", required=False)
        if not isinstance(self.follow_up, date) or isinstance(self.follow_up, datetime):
            raise ValidationError("follow_up", "must be a date")

    def to_json(self) -> dict[str, Any]:
        return {
            "diagnosis_code": self.diagnosis_code,
            "diagnosis_label": self.diagnosis_label,
            "investigations": list(self.investigations),
            "treatment_plan": self.treatment_plan,
            "follow_up": self.follow_up.isoformat(),
            "summary": self.summary,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OutcomeDraft:
        try:
            follow_up = date.fromisoformat(d["follow_up"])
        except (KeyError, TypeError, ValueError):
            raise ValidationError("follow_up", "must be a date (YYYY-MM-DD)") from None
        return cls(
            diagnosis_code=d.get("diagnosis_code", ""),
            diagnosis_label=d.get("diagnosis_label", ""),
            investigations=tuple(d.get("investigations") or ()),
            treatment_plan=d.get("treatment_plan", ""),
            follow_up=follow_up,
            summary=d.get("summary", "") or "",
        )


@dataclass(frozen=True, slots=True)
class Endorsement:
    """One member's signed endorsement of, or dissent from, one version of the outcome."""

    case_id: str
    version: int
    signer: str
    decision: EndorsementDecision
    reason: str
    signed_at: datetime
    #: Ed25519 signature (64 bytes) over :func:`signed_statement`
    signature: bytes
    #: the signer's Ed25519 public key (32 raw bytes)
    public_key: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    """The panel's recommendation as drafted (``version`` grows with each redraft)."""

    case_id: str
    version: int
    draft: OutcomeDraft
    drafted_by: str
    drafted_at: datetime
    endorsements: tuple[Endorsement, ...] = ()
    signed: bool = False

    def document(self) -> dict[str, Any]:
        """The outcome as it is signed: the draft plus what it is about and who wrote it."""
        return {
            "case_id": self.case_id,
            "version": self.version,
            "drafted_by": self.drafted_by,
            "drafted_at": self.drafted_at.isoformat(),
            **self.draft.to_json(),
        }


class NotificationKind(StrEnum):
    INVITATION = "invitation"
    INFORMATION_REQUEST = "information-request"
    INFORMATION_ANSWER = "information-answer"
    MENTION = "mention"
    MEETING = "meeting"
    DEADLINE = "deadline"
    OUTCOME_DRAFTED = "outcome-drafted"
    OUTCOME_SIGNED = "outcome-signed"


@dataclass(frozen=True, slots=True)
class Notification:
    """An entry of a person's in-app inbox: a kind and a link, never patient data."""

    id: str
    user: str
    kind: NotificationKind
    case_id: str | None
    link: str
    created_at: datetime
    read_at: datetime | None = None


# -- signing -------------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON value: sorted keys, no whitespace, UTF-8.

    For the values CPMS signs (objects of strings, integers, booleans, lists and
    nulls; no floats) this equals the JSON Canonicalization Scheme of RFC 8785:
    keys sorted by code point, the shortest escapes, no insignificant whitespace.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def signed_statement(
    document: dict[str, Any], *, signer: str, decision: EndorsementDecision, reason: str
) -> bytes:
    """What an endorsement signs: the whole outcome document, the signer and the decision."""
    return canonical_json(
        {
            "outcome": document,
            "signer": signer,
            "decision": EndorsementDecision(decision).value,
            "reason": reason,
            "purpose": "cpms-outcome-endorsement-v1",
        }
    )
