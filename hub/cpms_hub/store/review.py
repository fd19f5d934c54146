"""Panel review in the store: panels, invitations, opinions, discussion, meetings, outcomes.

:class:`ReviewStore` builds on :class:`~cpms_hub.store.cases.CaseStore` and keeps its
rules: each method is one transaction that checks the caller's ``authorize``
callback (a policy decision over the case's :class:`~cpms_hub.domain.CaseRef`),
audits what it did in that same transaction, and encrypts every text under the
case's data key, bound to (table, row id, field). Every step on a case keeps one
order, written once in ``ReviewStore._step``: authorise, load, check the lifecycle
(and panel membership, as :data:`_STEPS` says), do the step, then transition,
notify and audit.

The lifecycle is enforced here, not in any user interface: every step that
depends on the case's state goes through :func:`cpms_hub.domain.review.transition`
(one table, :data:`~cpms_hub.domain.review.TRANSITIONS`), which raises a 409 with
the reason when the step is illegal.

Endorsements are Ed25519 signatures (:mod:`cpms_hub.crypto.signing`) over
:func:`~cpms_hub.domain.review.signed_statement`, which embeds the outcome's whole
canonical document. Each member's key pair is made by the store on first use; the
private half is encrypted under a system data key (wrapped by the keyring), the
public half is kept in clear. :meth:`ReviewStore.verify_outcome` checks every
signature against the stored outcome (``cpms-admin verify-outcome``).

Notifications are written with the change they announce, and so are the e-mails
(a transactional outbox, ``mail_outbox``): a rolled-back change sends nothing, and
the request never waits on an SMTP server; a background sender
(:mod:`cpms_hub.service.mailer`) delivers them. Neither carries patient data: a
kind and a link of random ids.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cpms_hub.crypto import FieldCipher, signing
from cpms_hub.domain import (
    CaseRef,
    CaseStatus,
    ConflictError,
    IntegrityError,
    MemberRole,
    NotFoundError,
    PermissionDeniedError,
    Role,
    Urgency,
    ValidationError,
)
from cpms_hub.domain.audit import AuditOutcome
from cpms_hub.domain.review import (
    MAX_REASON,
    MAX_TEXT,
    Contribution,
    Endorsement,
    EndorsementDecision,
    InformationRequest,
    Invitation,
    InvitationStatus,
    LifecycleAction,
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
    canonical_json,
    signed_statement,
    transition,
)

from .audit import AuditTrail
from .cases import AuditContext, Authorize, CaseStore, _is_uuid
from .database import session_scope
from .keys import DataKeys
from .review_schema import (
    ContributionRow,
    EndorsementRow,
    InformationRequestRow,
    MailOutboxRow,
    MeetingRow,
    MessageRow,
    NotificationRow,
    OutcomeRow,
    PanelMemberRow,
    PanelRow,
    SigningKeyRow,
)
from .schema import AccountRow, AuditRow, CaseMemberRow, CaseRow

__all__ = ["ReviewStore", "PanelSummary", "SIGNING_KEY_ID", "MailItem"]

#: the system data key that encrypts members' private signing keys
SIGNING_KEY_ID = "system:signing"
_MAX_MEMBERS = 30
_MAX_MENTIONS = 30
#: a deadline reminder goes out this long before the deadline
_REMIND_BEFORE = timedelta(days=2)
#: how long a failed e-mail waits before the next attempt, times the attempts so far
_RETRY_AFTER = timedelta(minutes=1)
_MAX_ATTEMPTS = 8
#: subject lines of the e-mails: what happened, never about whom
_MAIL_SUBJECTS: dict[NotificationKind, str] = {
    NotificationKind.INVITATION: "you are invited to an expert panel",
    NotificationKind.INFORMATION_REQUEST: "a panel asks you for more information",
    NotificationKind.INFORMATION_ANSWER: "your panel's question was answered",
    NotificationKind.MENTION: "you were mentioned in a panel discussion",
    NotificationKind.MEETING: "a panel meeting was scheduled",
    NotificationKind.DEADLINE: "a panel deadline is near",
    NotificationKind.OUTCOME_DRAFTED: "an outcome awaits your signature",
    NotificationKind.OUTCOME_SIGNED: "a panel outcome has been signed",
}
#: which notifications also go out by e-mail (the issue's list)
_MAILED = frozenset(
    {
        NotificationKind.INVITATION,
        NotificationKind.INFORMATION_REQUEST,
        NotificationKind.DEADLINE,
        NotificationKind.OUTCOME_SIGNED,
    }
)
#: every review step on a case, by its audit action: the lifecycle action it takes
#: (None: it only reads) and whether only an accepted panel member may take it
_STEPS: dict[str, tuple[LifecycleAction | None, bool]] = {
    "panel.read": (None, False),
    "panel.assemble": (LifecycleAction.ASSEMBLE, False),
    "panel.start-discussion": (LifecycleAction.START_DISCUSSION, False),
    "panel.close": (LifecycleAction.CLOSE, False),
    "panel.reopen": (LifecycleAction.REOPEN, False),
    "invitation.accept": (LifecycleAction.RESPOND_INVITATION, False),
    "invitation.decline": (LifecycleAction.RESPOND_INVITATION, False),
    "contribution.read": (None, False),
    "contribution.write": (LifecycleAction.CONTRIBUTE, True),
    "message.read": (None, False),
    "message.write": (LifecycleAction.DISCUSS, True),
    "info.read": (None, False),
    "info.request": (LifecycleAction.REQUEST_INFORMATION, True),
    "info.answer": (LifecycleAction.ANSWER_INFORMATION, False),
    "meeting.read": (None, False),
    "meeting.schedule": (LifecycleAction.SCHEDULE_MEETING, True),
    "meeting.record": (LifecycleAction.SCHEDULE_MEETING, True),
    "outcome.read": (None, False),
    "outcome.draft": (LifecycleAction.DRAFT_OUTCOME, True),
    "outcome.endorse": (LifecycleAction.ENDORSE, True),
}
_OPEN_STATES = (
    CaseStatus.PANEL_ASSEMBLED.value,
    CaseStatus.IN_DISCUSSION.value,
    CaseStatus.OUTCOME_DRAFTED.value,
    CaseStatus.REOPENED.value,
)


@dataclass(frozen=True, slots=True)
class PanelSummary:
    """A case and its panel at a glance, for coordinators (no clinical content)."""

    case_id: str
    network: str
    status: CaseStatus
    urgency: Urgency | None
    deadline: date | None
    lead: str | None
    members: int
    accepted: int
    contributions: int
    overdue: bool
    submitted_at: datetime | None
    closed_at: datetime | None


@dataclass(frozen=True, slots=True)
class MailItem:
    id: str
    to_addr: str
    subject: str
    body: str
    attempts: int


@dataclass(slots=True)
class _Step:
    """One review step inside its transaction (see :meth:`ReviewStore._step`): the
    session, the case's row and, for steps only panel members take, the caller's
    membership. :meth:`done` finishes it; a step that never calls it fails."""

    store: ReviewStore
    s: Session
    case_id: str
    row: CaseRow
    member: PanelMemberRow | None
    action: str
    ctx: AuditContext
    step: LifecycleAction | None
    finished: bool = False

    def done(
        self,
        detail: str = "",
        *,
        notify: Iterable[str] = (),
        kind: NotificationKind | None = None,
    ) -> None:
        """Move the case to the step's state, notify ``notify`` of ``kind``, audit the
        step with ``detail``, and flush (the rows are then readable in this session)."""
        if self.finished:
            raise RuntimeError(f"{self.action} was finished twice")
        if self.step is not None:
            self.store._move(self.row, self.step)
        if kind is not None:
            self.store._notify(self.s, notify, kind, self.case_id)
        self.store.cases._allowed(self.s, self.ctx, self.action, self.case_id, detail=detail)
        self.s.flush()
        self.finished = True


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _text(value: object, name: str, *, max_len: int = MAX_TEXT, required: bool = True) -> str:
    if not isinstance(value, str):
        raise ValidationError(name, "must be text")
    if required and not value.strip():
        raise ValidationError(name, "must not be empty")
    if len(value) > max_len:
        raise ValidationError(name, f"must be at most {max_len} characters")
    return value


def _users(text: str) -> tuple[str, ...]:
    return tuple(u for u in text.split(",") if u)


class ReviewStore:
    """Panel review over the case store's database, keys and audit trail."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        data_keys: DataKeys,
        audit: AuditTrail,
        cases: CaseStore,
        *,
        link_base: str = "/services/cpms-review/",
        mail_enabled: bool = False,
    ) -> None:
        self.sessions = session_factory
        self.keys = data_keys
        self.audit = audit
        self.cases = cases
        self.link_base = link_base
        self.mail_enabled = mail_enabled

    # -- helpers -------------------------------------------------------------------

    def _enc(self, s: Session, case_id: str, text: str, table: str, row_id: str, field: str):  # noqa: ANN202
        return self.cases._cipher(s, case_id).encrypt(text, table=table, row_id=row_id, field=field)

    def _dec(
        self, s: Session, case_id: str, blob: bytes, table: str, row_id: str, field: str
    ) -> str:
        return self.cases._cipher(s, case_id).decrypt_text(
            blob, table=table, row_id=row_id, field=field
        )

    def _open(
        self,
        s: Session,
        case_id: str,
        authorize: Authorize,
        ctx: AuditContext,
        action: str,
        step: LifecycleAction | None = None,
    ) -> tuple[CaseRow, CaseRef]:
        """The case, once the caller is authorised (403) and the step is legal (409).

        A step locks the case's row first (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite
        serialises writers anyway), so two steps on one case never interleave: two last
        signatures arriving together still seal the outcome, two redrafts get two versions.
        """
        if step is not None and _is_uuid(case_id):
            s.execute(select(CaseRow.id).where(CaseRow.id == case_id).with_for_update())
        row = self.cases._row(s, case_id)
        ref = self.cases._check(s, row, authorize, ctx, action)
        if step is not None:
            transition(ref.status, step)
        return row, ref

    @contextmanager
    def _step(
        self, case_id: str, action: str, authorize: Authorize, ctx: AuditContext
    ) -> Iterator[_Step]:
        """One review step (one of :data:`_STEPS`) in one transaction, in the order every
        step keeps: authorise the caller and load the case (:meth:`_open`: 403, 404, 409
        when the lifecycle forbids the step), require an accepted panel member where the
        step needs one (403), then the step's own work in the ``with`` block, which ends
        with :meth:`_Step.done`: the lifecycle transition, the notifications and the audit
        entry, in the same transaction."""
        step, member = _STEPS[action]
        with session_scope(self.sessions) as s:
            row, _ = self._open(s, case_id, authorize, ctx, action, step)
            m = self._member(s, ctx, action, case_id) if member else None
            st = _Step(self, s, case_id, row, m, action, ctx, step)
            yield st
            # every step is audited: one that forgot to finish must not commit unrecorded
            if not st.finished:
                raise RuntimeError(f"{action} ended without being recorded")

    def _move(self, row: CaseRow, step: LifecycleAction) -> CaseStatus:
        after = transition(CaseStatus(row.status), step)
        if after.value != row.status:
            row.status = after.value
            row.updated_at = _now()
        return after

    def _deny(self, s: Session, ctx: AuditContext, action: str, case_id: str, reason: str) -> None:
        """Audit a refusal found inside the store (beyond the policy), then raise 403."""
        self.cases._denied(s, ctx, action, case_id, (reason,))
        s.commit()
        raise PermissionDeniedError("not allowed", reasons=(reason,))

    def _member(
        self, s: Session, ctx: AuditContext, action: str, case_id: str, *, accepted: bool = True
    ) -> PanelMemberRow:
        """The caller's panel membership; with ``accepted``, only once they accepted."""
        m = s.get(PanelMemberRow, (case_id, ctx.actor))
        if m is None or m.status in (InvitationStatus.DECLINED, InvitationStatus.EXPIRED):
            self._deny(s, ctx, action, case_id, f"{ctx.actor} is not on the case's panel")
        if accepted and m.status != InvitationStatus.ACCEPTED:
            self._deny(s, ctx, action, case_id, f"{ctx.actor} has not accepted the invitation yet")
        return m

    def _notify(
        self, s: Session, users: Iterable[str], kind: NotificationKind, case_id: str | None
    ) -> None:
        """An inbox entry (and, for some kinds, an e-mail) per user: a kind and a link only."""
        link = self.link_base + (f"?case={case_id}" if case_id else "")
        now = _now()
        for user in sorted(set(users)):
            s.add(
                NotificationRow(
                    id=str(uuid.uuid4()),
                    user=user,
                    kind=kind.value,
                    case_id=case_id,
                    link=link,
                    created_at=now,
                )
            )
            if not (self.mail_enabled and kind in _MAILED):
                continue
            email = s.scalar(select(AccountRow.email).where(AccountRow.name == user))
            if not email:
                continue
            subject = "CPMS: " + _MAIL_SUBJECTS[kind]
            body = (
                f"Hello {user},\n\n{_MAIL_SUBJECTS[kind].capitalize()}.\n\n"
                f"Sign in to CPMS to read it:\n{link}\n\n"
                "This message holds no patient data by design.\n"
            )
            s.add(
                MailOutboxRow(
                    id=str(uuid.uuid4()),
                    to_addr=email,
                    subject=subject,
                    body=body,
                    created_at=now,
                    attempts=0,
                    next_attempt_at=now,
                    last_error="",
                )
            )

    def _clinicians(self, row: CaseRow) -> list[str]:
        return [m.user for m in row.members if m.role in (MemberRole.OWNER, MemberRole.ASSISTANT)]

    def _panel_rows(self, s: Session, case_id: str) -> list[PanelMemberRow]:
        return list(
            s.scalars(
                select(PanelMemberRow)
                .where(PanelMemberRow.case_id == case_id)
                .order_by(PanelMemberRow.invited_at, PanelMemberRow.user)
            )
        )

    @staticmethod
    def _drop_access(row: CaseRow, user: str) -> None:
        """``user`` stops being a panel member of the case (so stops reading it)."""
        for cm in list(row.members):
            if cm.user == user and cm.role == MemberRole.PANEL_MEMBER:
                row.members.remove(cm)

    def _panel(self, s: Session, row: CaseRow, *, with_reasons: bool) -> Panel:
        prow = s.get(PanelRow, row.id)
        if prow is None:
            raise NotFoundError("the case has no panel yet")
        members = []
        for m in self._panel_rows(s, row.id):
            status = InvitationStatus(m.status)
            if status is InvitationStatus.INVITED and _utc(m.expires_at) < _now():
                status = InvitationStatus.EXPIRED
            reason = ""
            if with_reasons and m.reason_enc is not None:
                reason = self._dec(s, row.id, m.reason_enc, "panel_members", m.user, "reason")
            members.append(
                PanelMember(
                    user=m.user,
                    role=PanelRole(m.role),
                    status=status,
                    invited_at=_utc(m.invited_at),
                    expires_at=_utc(m.expires_at),
                    network=m.network,
                    responded_at=_utc(m.responded_at),
                    reason=reason,
                )
            )
        return Panel(
            case_id=row.id,
            network=row.network,
            urgency=Urgency(prow.urgency),
            deadline=prow.deadline,
            members=tuple(members),
            assembled_by=prow.assembled_by,
            assembled_at=_utc(prow.assembled_at),
            status=CaseStatus(row.status),
        )

    # -- assembling and managing a panel -------------------------------------------

    def assemble(
        self,
        case_id: str,
        members: list[PanelMemberSpec],
        *,
        urgency: Urgency,
        deadline: date,
        invitation_days: int = 7,
        authorize: Authorize,
        ctx: AuditContext,
        today: date | None = None,
    ) -> Panel:
        """Put the panel together (or change it): the list is the whole panel.

        Everyone listed must be an active panel-member account; people from another
        network come as guests; exactly one lead. New members are invited and become
        members of the case (so they may read it); those left out lose both.
        """
        today = today or _now().date()
        if not isinstance(deadline, date) or deadline < today:
            raise ValidationError("deadline", "must not be in the past")
        if not 1 <= invitation_days <= 60:
            raise ValidationError("invitation_days", "must be 1-60 days")
        urgency = Urgency(urgency)
        if not members:
            raise ValidationError("members", "a panel needs at least one member")
        if len(members) > _MAX_MEMBERS:
            raise ValidationError("members", f"at most {_MAX_MEMBERS} members")
        users = [m.user for m in members]
        if len(set(users)) != len(users):
            raise ValidationError("members", "each person may be listed once")
        leads = [m for m in members if m.role is PanelRole.LEAD]
        if len(leads) != 1:
            raise ValidationError("members", "exactly one member must be the lead")
        with self._step(case_id, "panel.assemble", authorize, ctx) as st:
            s, row = st.s, st.row
            problems = []
            accounts = {
                a.name: a for a in s.scalars(select(AccountRow).where(AccountRow.name.in_(users)))
            }
            for spec in members:
                acc = accounts.get(spec.user)
                if acc is None or acc.status != "active":
                    problems.append(f"members.user: {spec.user} is not an active account")
                    continue
                roles = set(acc.roles.split(","))
                if Role.PANEL_MEMBER.value not in roles:
                    problems.append(f"members.user: {spec.user} is not a panel member")
                if spec.user in self._clinicians(row):
                    problems.append(f"members.user: {spec.user} is a clinician of the case")
                if acc.network != row.network and spec.role is not PanelRole.GUEST:
                    problems.append(
                        f"members.role: {spec.user} is from another network: invite as guest"
                    )
            if problems:
                raise ValidationError.of(problems)
            now = _now()
            prow = s.get(PanelRow, case_id)
            if prow is None:
                prow = PanelRow(case_id=case_id, assembled_by=ctx.actor, assembled_at=now)
                s.add(prow)
            prow.urgency = urgency.value
            if prow.deadline != deadline:
                prow.reminded_at = None
            prow.deadline = deadline
            existing = {m.user: m for m in self._panel_rows(s, case_id)}
            invited = []
            for spec in members:
                m = existing.pop(spec.user, None)
                if m is not None and m.status in (
                    InvitationStatus.INVITED,
                    InvitationStatus.ACCEPTED,
                ):
                    m.role = spec.role.value
                    continue
                if m is not None:
                    s.delete(m)
                    s.flush()
                s.add(
                    PanelMemberRow(
                        case_id=case_id,
                        user=spec.user,
                        role=spec.role.value,
                        status=InvitationStatus.INVITED.value,
                        network=accounts[spec.user].network,
                        invited_by=ctx.actor,
                        invited_at=now,
                        expires_at=now + timedelta(days=invitation_days),
                    )
                )
                invited.append(spec.user)
                if not any(cm.user == spec.user for cm in row.members):
                    row.members.append(
                        CaseMemberRow(
                            case_id=case_id,
                            user=spec.user,
                            role=MemberRole.PANEL_MEMBER.value,
                            added_at=now,
                        )
                    )
            # people left off the panel lose their access to the case
            for user, m in existing.items():
                s.delete(m)
                self._drop_access(row, user)
            st.done(
                f"invited={','.join(invited)} removed={','.join(existing)}",
                notify=invited,
                kind=NotificationKind.INVITATION,
            )
            return self._panel(s, row, with_reasons=True)

    def panel(
        self, case_id: str, *, authorize: Authorize, ctx: AuditContext, with_reasons: bool
    ) -> Panel:
        with self._step(case_id, "panel.read", authorize, ctx) as st:
            panel = self._panel(st.s, st.row, with_reasons=with_reasons)
            st.done()
            return panel

    def panel_action(
        self, case_id: str, action: str, *, authorize: Authorize, ctx: AuditContext
    ) -> Panel:
        """``start-discussion``, ``close`` or ``reopen`` the case's panel."""
        actions = ("start-discussion", "close", "reopen")  # their steps: _STEPS
        if action not in actions:
            raise ValidationError("action", f"must be one of {', '.join(actions)}")
        with self._step(case_id, f"panel.{action}", authorize, ctx) as st:
            prow = st.s.get(PanelRow, case_id)
            if prow is None:
                raise NotFoundError("the case has no panel yet")
            if action == "close":
                prow.closed_at = _now()
            elif action == "reopen":
                prow.closed_at = None
            st.done()
            return self._panel(st.s, st.row, with_reasons=False)

    def respond(
        self,
        case_id: str,
        *,
        accept: bool,
        reason: str,
        authorize: Authorize,
        ctx: AuditContext,
    ) -> Invitation:
        """Accept or decline an invitation (a reason is required to decline)."""
        reason = _text(reason or "", "reason", max_len=MAX_REASON, required=not accept)
        action = "invitation.accept" if accept else "invitation.decline"
        with self._step(case_id, action, authorize, ctx) as st:
            s, row = st.s, st.row
            m = s.get(PanelMemberRow, (case_id, ctx.actor))
            if m is None:
                raise NotFoundError("you have no invitation for this case")
            if m.status != InvitationStatus.INVITED:
                raise ConflictError(
                    "already answered", reasons=(f"the invitation is already {m.status}",)
                )
            now = _now()
            if _utc(m.expires_at) < now:
                m.status = InvitationStatus.EXPIRED.value
                self._drop_access(row, m.user)
                s.commit()
                raise ConflictError(
                    "invitation expired",
                    reasons=(
                        f"the invitation expired on {_utc(m.expires_at):%Y-%m-%d %H:%M} UTC: "
                        "ask the coordinator to invite you again",
                    ),
                )
            m.status = (InvitationStatus.ACCEPTED if accept else InvitationStatus.DECLINED).value
            m.responded_at = now
            if reason:
                m.reason_enc = self._enc(s, case_id, reason, "panel_members", m.user, "reason")
            if not accept:
                # declining gives up access to the case
                self._drop_access(row, ctx.actor)
            st.done()
            prow = s.get(PanelRow, case_id)
            return self._invitation(m, row, prow)

    @staticmethod
    def _invitation(m: PanelMemberRow, row: CaseRow, prow: PanelRow) -> Invitation:
        status = InvitationStatus(m.status)
        if status is InvitationStatus.INVITED and _utc(m.expires_at) < _now():
            status = InvitationStatus.EXPIRED
        return Invitation(
            case_id=m.case_id,
            network=row.network,
            role=PanelRole(m.role),
            status=status,
            urgency=Urgency(prow.urgency),
            deadline=prow.deadline,
            invited_by=m.invited_by,
            invited_at=_utc(m.invited_at),
            expires_at=_utc(m.expires_at),
        )

    def invitations(self, user: str) -> list[Invitation]:
        """``user``'s invitations, newest first (names, dates, states: no clinical data)."""
        with session_scope(self.sessions, write=False) as s:
            rows = s.execute(
                select(PanelMemberRow, CaseRow, PanelRow)
                .join(CaseRow, CaseRow.id == PanelMemberRow.case_id)
                .join(PanelRow, PanelRow.case_id == PanelMemberRow.case_id)
                .where(PanelMemberRow.user == user)
                .order_by(PanelMemberRow.invited_at.desc())
            ).all()
            return [self._invitation(m, c, p) for m, c, p in rows]

    # -- opinions and discussion ---------------------------------------------------

    def _contribution(self, s: Session, r: ContributionRow) -> Contribution:
        body = self._dec(s, r.case_id, r.body_enc, "contributions", r.id, "body")
        return Contribution(r.id, r.case_id, r.author, body, _utc(r.created_at), _utc(r.updated_at))

    def contributions(
        self, case_id: str, *, authorize: Authorize, ctx: AuditContext, mine: bool = False
    ) -> list[Contribution]:
        with self._step(case_id, "contribution.read", authorize, ctx) as st:
            stmt = select(ContributionRow).where(ContributionRow.case_id == case_id)
            if mine:
                stmt = stmt.where(ContributionRow.author == ctx.actor)
            rows = st.s.scalars(stmt.order_by(ContributionRow.created_at)).all()
            out = [self._contribution(st.s, r) for r in rows]
            st.done(f"count={len(out)}")
            return out

    def put_contribution(
        self, case_id: str, body: str, *, authorize: Authorize, ctx: AuditContext
    ) -> Contribution:
        """Write or rewrite the caller's opinion (not empty; frozen once the outcome is drafted)."""
        body = _text(body, "body")
        with self._step(case_id, "contribution.write", authorize, ctx) as st:
            s = st.s
            now = _now()
            r = s.scalar(
                select(ContributionRow).where(
                    ContributionRow.case_id == case_id, ContributionRow.author == ctx.actor
                )
            )
            if r is None:
                r = ContributionRow(
                    id=str(uuid.uuid4()), case_id=case_id, author=ctx.actor, created_at=now
                )
                r.body_enc = self._enc(s, case_id, body, "contributions", r.id, "body")
                s.add(r)
            else:
                r.body_enc = self._enc(s, case_id, body, "contributions", r.id, "body")
            r.updated_at = now
            st.done(f"id={r.id}")
            return self._contribution(s, r)

    def _message(self, s: Session, r: MessageRow) -> Message:
        return Message(
            id=r.id,
            case_id=r.case_id,
            author=r.author,
            body=self._dec(s, r.case_id, r.body_enc, "messages", r.id, "body"),
            created_at=_utc(r.created_at),
            parent_id=r.parent_id,
            mentions=_users(r.mentions),
        )

    def messages(self, case_id: str, *, authorize: Authorize, ctx: AuditContext) -> list[Message]:
        with self._step(case_id, "message.read", authorize, ctx) as st:
            rows = st.s.scalars(
                select(MessageRow)
                .where(MessageRow.case_id == case_id)
                .order_by(MessageRow.created_at, MessageRow.id)
            ).all()
            out = [self._message(st.s, r) for r in rows]
            st.done(f"count={len(out)}")
            return out

    def post_message(
        self,
        case_id: str,
        body: str,
        *,
        parent_id: str | None = None,
        mentions: Iterable[str] = (),
        authorize: Authorize,
        ctx: AuditContext,
    ) -> Message:
        body = _text(body, "body")
        mentions = tuple(dict.fromkeys(mentions))
        if len(mentions) > _MAX_MENTIONS:
            raise ValidationError("mentions", f"at most {_MAX_MENTIONS} people")
        with self._step(case_id, "message.write", authorize, ctx) as st:
            s = st.s
            if parent_id is not None:
                parent = s.get(MessageRow, parent_id) if _is_uuid(parent_id) else None
                if parent is None or parent.case_id != case_id:
                    raise ValidationError("parent_id", "is not a message of this case")
            on_panel = {
                m.user
                for m in self._panel_rows(s, case_id)
                if m.status in (InvitationStatus.INVITED, InvitationStatus.ACCEPTED)
            }
            strangers = [u for u in mentions if u not in on_panel]
            if strangers:
                raise ValidationError(
                    "mentions", f"not on the panel: {', '.join(sorted(strangers))}"
                )
            r = MessageRow(
                id=str(uuid.uuid4()),
                case_id=case_id,
                author=ctx.actor,
                parent_id=parent_id,
                mentions=",".join(mentions),
                created_at=_now(),
            )
            r.body_enc = self._enc(s, case_id, body, "messages", r.id, "body")
            s.add(r)
            st.done(
                f"id={r.id}",
                notify=[u for u in mentions if u != ctx.actor],
                kind=NotificationKind.MENTION,
            )
            return self._message(s, r)

    # -- requests for more information --------------------------------------------

    def _info(self, s: Session, r: InformationRequestRow) -> InformationRequest:
        t = "information_requests"
        return InformationRequest(
            id=r.id,
            case_id=r.case_id,
            asked_by=r.asked_by,
            question=self._dec(s, r.case_id, r.question_enc, t, r.id, "question"),
            asked_at=_utc(r.asked_at),
            answer=(
                self._dec(s, r.case_id, r.answer_enc, t, r.id, "answer")
                if r.answer_enc is not None
                else None
            ),
            answered_by=r.answered_by,
            answered_at=_utc(r.answered_at),
        )

    def information_requests(
        self, case_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> list[InformationRequest]:
        with self._step(case_id, "info.read", authorize, ctx) as st:
            rows = st.s.scalars(
                select(InformationRequestRow)
                .where(InformationRequestRow.case_id == case_id)
                .order_by(InformationRequestRow.asked_at)
            ).all()
            out = [self._info(st.s, r) for r in rows]
            st.done(f"count={len(out)}")
            return out

    def request_information(
        self, case_id: str, question: str, *, authorize: Authorize, ctx: AuditContext
    ) -> InformationRequest:
        question = _text(question, "question")
        with self._step(case_id, "info.request", authorize, ctx) as st:
            s = st.s
            r = InformationRequestRow(
                id=str(uuid.uuid4()), case_id=case_id, asked_by=ctx.actor, asked_at=_now()
            )
            r.question_enc = self._enc(
                s, case_id, question, "information_requests", r.id, "question"
            )
            s.add(r)
            st.done(
                f"id={r.id}",
                notify=self._clinicians(st.row),
                kind=NotificationKind.INFORMATION_REQUEST,
            )
            return self._info(s, r)

    def answer_information(
        self,
        case_id: str,
        request_id: str,
        answer: str,
        *,
        authorize: Authorize,
        ctx: AuditContext,
    ) -> InformationRequest:
        answer = _text(answer, "answer")
        with self._step(case_id, "info.answer", authorize, ctx) as st:
            s = st.s
            r = s.get(InformationRequestRow, request_id) if _is_uuid(request_id) else None
            if r is None or r.case_id != case_id:
                raise NotFoundError("no such request for information in this case")
            if r.answer_enc is not None:
                raise ConflictError(
                    "already answered", reasons=("this request has already been answered",)
                )
            r.answer_enc = self._enc(s, case_id, answer, "information_requests", r.id, "answer")
            r.answered_by = ctx.actor
            r.answered_at = _now()
            st.done(f"id={r.id}", notify=[r.asked_by], kind=NotificationKind.INFORMATION_ANSWER)
            return self._info(s, r)

    # -- meetings ------------------------------------------------------------------

    def _meeting(self, s: Session, r: MeetingRow) -> Meeting:
        accepted = [
            m.user for m in self._panel_rows(s, r.case_id) if m.status == InvitationStatus.ACCEPTED
        ]
        zones = dict(
            s.execute(
                select(AccountRow.name, AccountRow.timezone).where(AccountRow.name.in_(accepted))
            ).all()
        )
        return Meeting(
            id=r.id,
            case_id=r.case_id,
            title=self._dec(s, r.case_id, r.title_enc, "meetings", r.id, "title"),
            starts_at=_utc(r.starts_at),
            duration_minutes=r.duration_minutes,
            scheduled_by=r.scheduled_by,
            participants=tuple((u, zones.get(u) or "UTC") for u in accepted),
            attended=_users(r.attended),
            minutes=(
                self._dec(s, r.case_id, r.minutes_enc, "meetings", r.id, "minutes")
                if r.minutes_enc is not None
                else None
            ),
            recorded_at=_utc(r.recorded_at),
        )

    def meetings(self, case_id: str, *, authorize: Authorize, ctx: AuditContext) -> list[Meeting]:
        with self._step(case_id, "meeting.read", authorize, ctx) as st:
            rows = st.s.scalars(
                select(MeetingRow)
                .where(MeetingRow.case_id == case_id)
                .order_by(MeetingRow.starts_at)
            ).all()
            out = [self._meeting(st.s, r) for r in rows]
            st.done()
            return out

    def meeting(
        self, case_id: str, meeting_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> Meeting:
        with self._step(case_id, "meeting.read", authorize, ctx) as st:
            r = st.s.get(MeetingRow, meeting_id) if _is_uuid(meeting_id) else None
            if r is None or r.case_id != case_id:
                raise NotFoundError("no such meeting in this case")
            st.done(f"id={meeting_id}")
            return self._meeting(st.s, r)

    def schedule_meeting(
        self,
        case_id: str,
        *,
        title: str,
        starts_at: datetime,
        duration_minutes: int,
        authorize: Authorize,
        ctx: AuditContext,
    ) -> Meeting:
        title = _text(title, "title", max_len=200)
        if not isinstance(starts_at, datetime) or starts_at.tzinfo is None:
            raise ValidationError("starts_at", "must be a date and time with a UTC offset")
        if starts_at < _now():
            raise ValidationError("starts_at", "must not be in the past")
        if not isinstance(duration_minutes, int) or not 5 <= duration_minutes <= 600:
            raise ValidationError("duration_minutes", "must be 5-600 minutes")
        with self._step(case_id, "meeting.schedule", authorize, ctx) as st:
            s = st.s
            r = MeetingRow(
                id=str(uuid.uuid4()),
                case_id=case_id,
                starts_at=starts_at.astimezone(UTC),
                duration_minutes=duration_minutes,
                scheduled_by=ctx.actor,
                attended="",
            )
            r.title_enc = self._enc(s, case_id, title, "meetings", r.id, "title")
            s.add(r)
            s.flush()
            meeting = self._meeting(s, r)
            others = [u for u, _ in meeting.participants if u != ctx.actor]
            st.done(f"id={r.id}", notify=others, kind=NotificationKind.MEETING)
            return meeting

    def record_meeting(
        self,
        case_id: str,
        meeting_id: str,
        *,
        attended: Iterable[str],
        minutes: str,
        authorize: Authorize,
        ctx: AuditContext,
    ) -> Meeting:
        minutes = _text(minutes, "minutes")
        attended = tuple(dict.fromkeys(attended))
        with self._step(case_id, "meeting.record", authorize, ctx) as st:
            s = st.s
            r = s.get(MeetingRow, meeting_id) if _is_uuid(meeting_id) else None
            if r is None or r.case_id != case_id:
                raise NotFoundError("no such meeting in this case")
            panel = {m.user for m in self._panel_rows(s, case_id)}
            strangers = [u for u in attended if u not in panel]
            if strangers:
                raise ValidationError(
                    "attended", f"not on the panel: {', '.join(sorted(strangers))}"
                )
            r.attended = ",".join(attended)
            r.minutes_enc = self._enc(s, case_id, minutes, "meetings", r.id, "minutes")
            r.recorded_at = _now()
            st.done(f"id={r.id}")
            return self._meeting(s, r)

    # -- the outcome ---------------------------------------------------------------

    def _document(self, s: Session, o: OutcomeRow) -> dict[str, Any]:
        raw = self.cases._cipher(s, o.case_id).decrypt(
            o.document_enc, table="outcomes", row_id=o.case_id, field="document"
        )
        return json.loads(raw)

    def _outcome(self, s: Session, o: OutcomeRow) -> Outcome:
        doc = self._document(s, o)
        endorsements = []
        for e, key in s.execute(
            select(EndorsementRow, SigningKeyRow)
            .join(SigningKeyRow, SigningKeyRow.id == EndorsementRow.key_id)
            .where(EndorsementRow.case_id == o.case_id, EndorsementRow.version == o.version)
            .order_by(EndorsementRow.signed_at)
        ).all():
            endorsements.append(
                Endorsement(
                    case_id=e.case_id,
                    version=e.version,
                    signer=e.signer,
                    decision=EndorsementDecision(e.decision),
                    reason=self._dec(s, e.case_id, e.reason_enc, "endorsements", e.id, "reason"),
                    signed_at=_utc(e.signed_at),
                    signature=e.signature,
                    public_key=key.public_key,
                )
            )
        return Outcome(
            case_id=o.case_id,
            version=o.version,
            draft=OutcomeDraft.from_json(doc),
            drafted_by=doc["drafted_by"],
            drafted_at=datetime.fromisoformat(doc["drafted_at"]),
            endorsements=tuple(endorsements),
            signed=o.signed_at is not None,
        )

    def _pending(self, s: Session, case_id: str, outcome: Outcome) -> list[str]:
        signed = {e.signer for e in outcome.endorsements}
        return [
            m.user
            for m in self._panel_rows(s, case_id)
            if m.status == InvitationStatus.ACCEPTED and m.user not in signed
        ]

    def draft_outcome(
        self, case_id: str, draft: OutcomeDraft, *, authorize: Authorize, ctx: AuditContext
    ) -> tuple[Outcome, list[str]]:
        """The lead writes the outcome; a redraft is a new version and voids the signatures."""
        with self._step(case_id, "outcome.draft", authorize, ctx) as st:
            s, m = st.s, st.member
            if m.role != PanelRole.LEAD:
                self._deny(
                    s, ctx, "outcome.draft", case_id, "only the panel lead drafts the outcome"
                )
            o = s.get(OutcomeRow, case_id)
            now = _now()
            version = 1 if o is None else o.version + 1
            outcome = Outcome(case_id, version, draft, ctx.actor, now)
            document_enc = self.cases._cipher(s, case_id).encrypt(
                canonical_json(outcome.document()),
                table="outcomes",
                row_id=case_id,
                field="document",
            )
            if o is None:
                o = OutcomeRow(case_id=case_id)
                s.add(o)
            o.version = version
            o.drafted_by = ctx.actor
            o.drafted_at = now
            o.signed_at = None
            o.document_enc = document_enc
            others = [
                p.user
                for p in self._panel_rows(s, case_id)
                if p.status == InvitationStatus.ACCEPTED and p.user != ctx.actor
            ]
            st.done(f"version={version}", notify=others, kind=NotificationKind.OUTCOME_DRAFTED)
            out = self._outcome(s, o)
            return out, self._pending(s, case_id, out)

    def outcome(
        self, case_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> tuple[Outcome, list[str]]:
        """The outcome and who has not signed it yet."""
        with self._step(case_id, "outcome.read", authorize, ctx) as st:
            o = st.s.get(OutcomeRow, case_id)
            if o is None:
                raise NotFoundError("the panel has not drafted an outcome yet")
            out = self._outcome(st.s, o)
            st.done(f"version={o.version}")
            return out, self._pending(st.s, case_id, out)

    def _signing_key(self, s: Session, user: str) -> tuple[SigningKeyRow, bytes]:
        """``user``'s signing key and its private half, made on first use."""
        cipher = FieldCipher(self.keys.get_or_create(s, SIGNING_KEY_ID))
        key = s.scalar(
            select(SigningKeyRow)
            .where(SigningKeyRow.user == user)
            .order_by(SigningKeyRow.created_at.desc())
        )
        if key is not None:
            private = cipher.decrypt(
                key.private_enc, table="signing_keys", row_id=key.id, field="private"
            )
            return key, private
        private, public = signing.new_key_pair()
        key = SigningKeyRow(id=str(uuid.uuid4()), user=user, public_key=public, created_at=_now())
        key.private_enc = cipher.encrypt(
            private, table="signing_keys", row_id=key.id, field="private"
        )
        s.add(key)
        s.flush()
        return key, private

    def endorse(
        self,
        case_id: str,
        *,
        decision: EndorsementDecision,
        reason: str,
        version: int | None = None,
        authorize: Authorize,
        ctx: AuditContext,
    ) -> tuple[Outcome, list[str]]:
        """Sign the current outcome (endorse, or dissent with a reason); once per version.

        The caller's step-up (TOTP) is checked by the service before this is called.
        When every accepted member has signed, the outcome is sealed: the case becomes
        ``outcome-signed`` and its clinicians are notified.
        """
        decision = EndorsementDecision(decision)
        reason = _text(
            reason or "",
            "reason",
            max_len=MAX_REASON,
            required=decision is EndorsementDecision.DISSENT,
        )
        with self._step(case_id, "outcome.endorse", authorize, ctx) as st:
            s, row = st.s, st.row
            o = s.get(OutcomeRow, case_id)
            if o is None:  # pragma: no cover - the lifecycle says one is drafted
                raise NotFoundError("the panel has not drafted an outcome yet")
            if version is not None and version != o.version:
                raise ConflictError(
                    "outcome changed",
                    reasons=(
                        f"the outcome changed (now version {o.version}, you read {version}): "
                        "read it again before signing",
                    ),
                )
            already = s.scalar(
                select(EndorsementRow.id).where(
                    EndorsementRow.case_id == case_id,
                    EndorsementRow.version == o.version,
                    EndorsementRow.signer == ctx.actor,
                )
            )
            if already is not None:
                raise ConflictError(
                    "already signed",
                    reasons=(f"{ctx.actor} has already signed version {o.version} of the outcome",),
                )
            document = self._document(s, o)
            key, private = self._signing_key(s, ctx.actor)
            statement = signed_statement(
                document, signer=ctx.actor, decision=decision, reason=reason
            )
            e = EndorsementRow(
                id=str(uuid.uuid4()),
                case_id=case_id,
                version=o.version,
                signer=ctx.actor,
                decision=decision.value,
                signature=signing.sign(private, statement),
                key_id=key.id,
                signed_at=_now(),
            )
            e.reason_enc = self._enc(s, case_id, reason, "endorsements", e.id, "reason")
            s.add(e)
            s.flush()
            st.done(f"version={o.version} decision={decision.value}")
            out = self._outcome(s, o)
            pending = self._pending(s, case_id, out)
            if not pending:  # the last signature: a second step, sealing, in this transaction
                self._move(row, LifecycleAction.SEAL_OUTCOME)
                o.signed_at = _now()
                self._notify(s, self._clinicians(row), NotificationKind.OUTCOME_SIGNED, case_id)
                self.cases._allowed(s, ctx, "outcome.seal", case_id, detail=f"version={o.version}")
                s.flush()
                out = self._outcome(s, o)
            return out, pending

    def verify_outcome(self, case_id: str, *, ctx: AuditContext) -> list[str]:
        """Every problem with the stored outcome's signatures (empty: all verify).

        Reads the stored canonical outcome, rebuilds each signer's statement from it and
        checks the Ed25519 signature with the signer's recorded public key.
        """
        problems: list[str] = []
        with session_scope(self.sessions) as s:
            row = self.cases._row(s, case_id)
            o = s.get(OutcomeRow, case_id)
            if o is None:
                return ["outcome: the case has no outcome"]
            try:
                document = self._document(s, o)
            except IntegrityError:
                problems.append("outcome: the stored outcome fails authentication (it was changed)")
                document = None
            except ValueError:
                problems.append("outcome: the stored outcome is not JSON")
                document = None
            if document is not None:
                if document.get("case_id") != case_id or document.get("version") != o.version:
                    problems.append("outcome: the document names another case or version")
                rows = s.execute(
                    select(EndorsementRow, SigningKeyRow)
                    .join(SigningKeyRow, SigningKeyRow.id == EndorsementRow.key_id)
                    .where(EndorsementRow.case_id == case_id, EndorsementRow.version == o.version)
                    .order_by(EndorsementRow.signed_at)
                ).all()
                if not rows:
                    problems.append(f"outcome: version {o.version} has no signatures")
                for e, key in rows:
                    reason = self._dec(s, case_id, e.reason_enc, "endorsements", e.id, "reason")
                    statement = signed_statement(
                        document,
                        signer=e.signer,
                        decision=EndorsementDecision(e.decision),
                        reason=reason,
                    )
                    if key.user != e.signer:
                        problems.append(f"signature of {e.signer}: made with another person's key")
                    elif not signing.verify(key.public_key, e.signature, statement):
                        problems.append(
                            f"signature of {e.signer}: does not verify over the stored outcome"
                        )
                if o.signed_at is None and row.status == CaseStatus.OUTCOME_SIGNED:
                    problems.append("outcome: the case says signed but the outcome is not")
            self.cases._allowed(
                s,
                ctx,
                "outcome.verify",
                case_id,
                detail="ok" if not problems else f"problems={len(problems)}",
            )
        return problems

    # -- lists and reports (no clinical content) -----------------------------------

    def _summaries(self, s: Session, case_rows: list[CaseRow]) -> list[PanelSummary]:
        ids = [r.id for r in case_rows]
        if not ids:
            return []
        panels = {
            p.case_id: p for p in s.scalars(select(PanelRow).where(PanelRow.case_id.in_(ids)))
        }
        members: dict[str, list[PanelMemberRow]] = defaultdict(list)
        for m in s.scalars(select(PanelMemberRow).where(PanelMemberRow.case_id.in_(ids))):
            members[m.case_id].append(m)
        counts = dict(
            s.execute(
                select(ContributionRow.case_id, func.count())
                .where(ContributionRow.case_id.in_(ids))
                .group_by(ContributionRow.case_id)
            ).all()
        )
        submitted = self._submitted_at(s, ids)
        today = _now().date()
        out = []
        for r in case_rows:
            p = panels.get(r.id)
            ms = [m for m in members[r.id] if m.status in ("invited", "accepted")]
            open_ = r.status in _OPEN_STATES
            out.append(
                PanelSummary(
                    case_id=r.id,
                    network=r.network,
                    status=CaseStatus(r.status),
                    urgency=Urgency(p.urgency) if p else None,
                    deadline=p.deadline if p else None,
                    lead=next((m.user for m in ms if m.role == PanelRole.LEAD), None),
                    members=len(ms),
                    accepted=sum(1 for m in ms if m.status == InvitationStatus.ACCEPTED),
                    contributions=counts.get(r.id, 0),
                    overdue=bool(p and open_ and p.deadline < today),
                    submitted_at=submitted.get(r.id),
                    closed_at=_utc(p.closed_at) if p else None,
                )
            )
        return out

    def _submitted_at(self, s: Session, ids: list[str]) -> dict[str, datetime]:
        rows = s.execute(
            select(AuditRow.case_id, func.max(AuditRow.at))
            .where(
                AuditRow.case_id.in_(ids),
                AuditRow.action == "case.submit",
                AuditRow.outcome == AuditOutcome.ALLOWED,
            )
            .group_by(AuditRow.case_id)
        ).all()
        return {cid: _utc(at) for cid, at in rows}

    def list_panels(
        self, *, user: str, network: str | None, scope: str, ctx: AuditContext
    ) -> list[PanelSummary]:
        """``mine``: cases ``user`` is on the panel of or a clinician of; ``network``: every
        case submitted to ``network`` (coordinators; the caller checks the role)."""
        if scope not in ("mine", "network"):
            raise ValidationError("scope", "must be mine or network")
        with session_scope(self.sessions) as s:
            if scope == "network":
                if network is None:
                    raise PermissionDeniedError(
                        "not allowed", reasons=("only coordinators list their network's panels",)
                    )
                stmt = select(CaseRow).where(
                    CaseRow.network == network, CaseRow.status != CaseStatus.DRAFT.value
                )
            else:
                mine = select(PanelMemberRow.case_id).where(
                    PanelMemberRow.user == user,
                    PanelMemberRow.status.in_(("invited", "accepted")),
                )
                owned = select(CaseMemberRow.case_id).where(
                    CaseMemberRow.user == user,
                    CaseMemberRow.role.in_((MemberRole.OWNER.value, MemberRole.ASSISTANT.value)),
                )
                stmt = select(CaseRow).where(
                    (CaseRow.id.in_(mine) | CaseRow.id.in_(owned))
                    & CaseRow.id.in_(select(PanelRow.case_id))
                )
            rows = list(s.scalars(stmt.order_by(CaseRow.created_at)))
            out = self._summaries(s, rows)
            self.audit.append(
                s,
                actor=ctx.actor,
                action="panel.list",
                outcome=AuditOutcome.ALLOWED,
                client=ctx.client,
                detail=f"scope={scope} count={len(out)}",
            )
            return out

    def monitor(self, network: str, *, ctx: AuditContext) -> dict[str, list[PanelSummary]]:
        """Open panels of ``network``, the overdue ones, and those short of two opinions."""
        panels = [
            p
            for p in self.list_panels(user=ctx.actor, network=network, scope="network", ctx=ctx)
            if p.status.value in _OPEN_STATES
        ]
        return {
            "open": panels,
            "overdue": [p for p in panels if p.overdue],
            "few_contributions": [p for p in panels if p.contributions < 2],
        }

    def activity(self, *, network: str, ctx: AuditContext) -> dict[str, list[dict[str, Any]]]:
        """Aggregates across networks (counts and durations; case ids of ``network`` only)."""
        with session_scope(self.sessions) as s:
            rows = list(s.scalars(select(CaseRow).where(CaseRow.status != CaseStatus.DRAFT.value)))
            summaries = self._summaries(s, rows)
            self.audit.append(
                s,
                actor=ctx.actor,
                action="panel.reports",
                outcome=AuditOutcome.ALLOWED,
                client=ctx.client,
                detail=f"cases={len(rows)}",
            )
        per_month: dict[tuple[str, str], int] = defaultdict(int)
        by_network: dict[str, dict[str, int]] = defaultdict(
            lambda: {"submitted": 0, "open": 0, "closed": 0}
        )
        closure, contributions = [], []
        for p in summaries:
            when = p.submitted_at
            if when is not None:
                per_month[(f"{when:%Y-%m}", p.network)] += 1
            counts = by_network[p.network]
            counts["submitted"] += 1
            if p.status.value in _OPEN_STATES:
                counts["open"] += 1
            if p.status is CaseStatus.CLOSED:
                counts["closed"] += 1
            own = p.network == network
            if p.closed_at and when:
                days = round((p.closed_at - when).total_seconds() / 86400, 2)
                closure.append(
                    {"case_id": p.case_id if own else None, "network": p.network, "days": days}
                )
            if p.urgency is not None:
                contributions.append(
                    {
                        "case_id": p.case_id if own else None,
                        "network": p.network,
                        "contributions": p.contributions,
                    }
                )
        return {
            "cases_per_month": [
                {"month": m, "network": n, "cases": c} for (m, n), c in sorted(per_month.items())
            ],
            "time_to_closure": closure,
            "contributions_per_panel": contributions,
            "by_network": [{"network": n, **c} for n, c in sorted(by_network.items())],
        }

    # -- notifications and mail ----------------------------------------------------

    @staticmethod
    def _notification(r: NotificationRow) -> Notification:
        return Notification(
            id=r.id,
            user=r.user,
            kind=NotificationKind(r.kind),
            case_id=r.case_id,
            link=r.link,
            created_at=_utc(r.created_at),
            read_at=_utc(r.read_at),
        )

    def notifications(
        self, user: str, *, unread: bool = False, limit: int = 200
    ) -> list[Notification]:
        with session_scope(self.sessions, write=False) as s:
            stmt = select(NotificationRow).where(NotificationRow.user == user)
            if unread:
                stmt = stmt.where(NotificationRow.read_at.is_(None))
            rows = s.scalars(stmt.order_by(NotificationRow.created_at.desc()).limit(limit))
            return [self._notification(r) for r in rows]

    def mark_read(self, user: str, notification_id: str) -> Notification:
        with session_scope(self.sessions) as s:
            r = s.get(NotificationRow, notification_id) if _is_uuid(notification_id) else None
            if r is None or r.user != user:
                raise NotFoundError("no such notification")
            if r.read_at is None:
                r.read_at = _now()
            return self._notification(r)

    def expire_invitations(self, *, now: datetime | None = None) -> int:
        """Mark unanswered invitations past their date expired; the invitee loses access."""
        now = now or _now()
        with session_scope(self.sessions) as s:
            rows = s.scalars(
                select(PanelMemberRow).where(
                    PanelMemberRow.status == InvitationStatus.INVITED.value,
                    PanelMemberRow.expires_at < now,
                )
            ).all()
            for m in rows:
                m.status = InvitationStatus.EXPIRED.value
                self._drop_access(self.cases._row(s, m.case_id), m.user)
                self.audit.append(
                    s,
                    actor="cpms-store",
                    action="invitation.expire",
                    outcome=AuditOutcome.ALLOWED,
                    case_id=m.case_id,
                    detail=f"user={m.user}",
                )
            return len(rows)

    def remind_deadlines(self, *, now: datetime | None = None) -> int:
        """Notify the members of open panels whose deadline is near or past (once each)."""
        now = now or _now()
        sent = 0
        with session_scope(self.sessions) as s:
            rows = s.execute(
                select(PanelRow, CaseRow)
                .join(CaseRow, CaseRow.id == PanelRow.case_id)
                .where(
                    PanelRow.reminded_at.is_(None),
                    PanelRow.deadline <= (now + _REMIND_BEFORE).date(),
                    CaseRow.status.in_(_OPEN_STATES),
                )
            ).all()
            for p, c in rows:
                users = [
                    m.user
                    for m in self._panel_rows(s, c.id)
                    if m.status in (InvitationStatus.INVITED, InvitationStatus.ACCEPTED)
                ]
                self._notify(s, users, NotificationKind.DEADLINE, c.id)
                p.reminded_at = now
                sent += 1
        return sent

    def pending_mail(self, *, limit: int = 50) -> list[MailItem]:
        with session_scope(self.sessions, write=False) as s:
            rows = s.scalars(
                select(MailOutboxRow)
                .where(
                    MailOutboxRow.sent_at.is_(None),
                    MailOutboxRow.next_attempt_at <= _now(),
                    MailOutboxRow.attempts < _MAX_ATTEMPTS,
                )
                .order_by(MailOutboxRow.created_at)
                .limit(limit)
            )
            return [MailItem(r.id, r.to_addr, r.subject, r.body, r.attempts) for r in rows]

    def mail_done(self, mail_id: str, *, error: str | None = None) -> None:
        """Record a delivery (``error`` None) or a failed attempt (retried later)."""
        with session_scope(self.sessions) as s:
            r = s.get(MailOutboxRow, mail_id)
            if r is None:
                return
            r.attempts += 1
            if error is None:
                r.sent_at = _now()
                r.last_error = ""
            else:
                r.last_error = error[:200]
                r.next_attempt_at = _now() + _RETRY_AFTER * r.attempts
