"""Pure authorisation decisions: ``decide(actor, action, case) -> Decision``.

A decision is allowed only when every check passes, and it carries the
reasons either way (in the manner of Datasette's permission checks), so a
403 can say why and the audit trail can record it. Three things are checked,
in this order: the account is active; the token carries the scope the action
needs (least privilege: a token may hold less than its owner); the account's
roles and its relation to the case allow it; for everyone but the case's own
clinicians, the patient's consent to panel discussion must stand (a case
whose consent is withdrawn is frozen for its panel, and the reason says so).
Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cpms_hub.domain import (
    AccountStatus,
    Case,
    CaseRef,
    CaseStatus,
    ConsentScope,
    MemberRole,
    Role,
)

from .scopes import Scope

__all__ = ["Action", "Actor", "Decision", "decide", "ACTION_SCOPES"]


class Action(StrEnum):
    CASE_CREATE = "case.create"
    CASE_LIST = "case.list"
    CASE_READ = "case.read"
    CASE_UPDATE = "case.update"
    CASE_LOOKUP = "case.lookup"
    CASE_SUBMIT = "case.submit"
    CASE_EXPORT = "case.export"
    CONSENT_READ = "consent.read"
    CONSENT_WRITE = "consent.write"
    FILE_WRITE = "file.write"
    FILE_READ = "file.read"
    ANNOTATION_WRITE = "annotation.write"
    ACCOUNT_MANAGE = "account.manage"
    AUDIT_READ = "audit.read"
    COHORT_READ = "cohort.read"
    COHORT_REPORT = "cohort.report"
    COHORT_SIMILAR = "cohort.similar"
    CASE_SIMILAR = "case.similar"
    REGISTRY_EXPORT = "registry.export"
    # panel review (see cpms_hub.domain.review)
    PANEL_ASSEMBLE = "panel.assemble"
    PANEL_MANAGE = "panel.manage"
    PANEL_VIEW = "panel.view"
    PANEL_REPORTS = "panel.reports"
    EXPERT_SEARCH = "panel.experts"
    REVIEW_READ = "review.read"
    REVIEW_WRITE = "review.write"
    INFO_READ = "review.info.read"
    INFO_ANSWER = "review.info.answer"
    OUTCOME_READ = "review.outcome.read"
    # what became of the patient after the signed outcome (cpms_hub.domain.followup)
    FOLLOWUP_WRITE = "review.followup.write"


ACTION_SCOPES: dict[Action, str] = {
    Action.CASE_CREATE: Scope.CASES_WRITE,
    Action.CASE_LIST: Scope.CASES_READ,
    Action.CASE_READ: Scope.CASES_READ,
    Action.CASE_UPDATE: Scope.CASES_WRITE,
    Action.CASE_LOOKUP: Scope.CASES_READ,
    Action.CASE_SUBMIT: Scope.CASES_WRITE,
    Action.CASE_EXPORT: Scope.CASES_READ,
    Action.CONSENT_READ: Scope.CASES_READ,
    Action.CONSENT_WRITE: Scope.CASES_WRITE,
    Action.FILE_WRITE: Scope.CASES_WRITE,
    Action.FILE_READ: Scope.CASES_READ,
    # panel members hold only the read scope: annotating is part of reviewing
    Action.ANNOTATION_WRITE: Scope.CASES_READ,
    Action.ACCOUNT_MANAGE: Scope.ACCOUNTS,
    Action.AUDIT_READ: Scope.AUDIT,
    Action.COHORT_READ: Scope.COHORTS,
    Action.COHORT_REPORT: Scope.COHORTS,
    Action.COHORT_SIMILAR: Scope.COHORTS,
    Action.CASE_SIMILAR: Scope.CASES_READ,
    Action.REGISTRY_EXPORT: Scope.PANELS,
    Action.PANEL_ASSEMBLE: Scope.PANELS,
    Action.PANEL_MANAGE: Scope.PANELS,
    Action.PANEL_VIEW: Scope.CASES_READ,
    Action.PANEL_REPORTS: Scope.PANELS,
    Action.EXPERT_SEARCH: Scope.PANELS,
    # panel members hold cases:read only: reviewing is what that scope lets them do
    Action.REVIEW_READ: Scope.CASES_READ,
    Action.REVIEW_WRITE: Scope.CASES_READ,
    Action.INFO_READ: Scope.CASES_READ,
    Action.INFO_ANSWER: Scope.CASES_WRITE,
    Action.OUTCOME_READ: Scope.CASES_READ,
    Action.FOLLOWUP_WRITE: Scope.CASES_WRITE,
}

#: anonymised analyses: data scientists only, and never a pseudonymised record
_COHORT_ACTIONS = frozenset({Action.COHORT_READ, Action.COHORT_REPORT, Action.COHORT_SIMILAR})

#: roles that may touch pseudonymised case content at all
_CASE_ROLES = frozenset({Role.CLINICIAN, Role.PANEL_MEMBER, Role.COORDINATOR})


@dataclass(frozen=True, slots=True)
class Actor:
    """The caller, as established by the hub (name, token scopes) and our accounts table."""

    name: str
    roles: frozenset[Role]
    hospital: str
    network: str
    status: AccountStatus
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reasons: tuple[str, ...]

    def __bool__(self) -> bool:
        return self.allowed


def _deny(*reasons: str) -> Decision:
    return Decision(False, reasons)


def decide(actor: Actor, action: Action, case: CaseRef | Case | None = None) -> Decision:
    """May ``actor`` perform ``action`` (on ``case`` where the action concerns one)?"""
    if actor.status is not AccountStatus.ACTIVE:
        return _deny(f"account {actor.name} is {actor.status.value}")
    needed = ACTION_SCOPES[action]
    if needed not in actor.scopes:
        return _deny(f"token lacks scope {needed}")

    if action is Action.ACCOUNT_MANAGE:
        if Role.HELPDESK in actor.roles:
            return Decision(True, ("helpdesk manages accounts",))
        return _deny("only the helpdesk manages accounts")
    if action is Action.AUDIT_READ:
        if Role.AUDITOR in actor.roles:
            return Decision(True, ("auditors read the audit trail",))
        return _deny("only auditors read the audit trail")

    if action in _COHORT_ACTIONS:
        if Role.DATA_SCIENTIST in actor.roles:
            return Decision(
                True, ("data scientists study anonymised cases of consenting patients",)
            )
        return _deny("only data scientists receive anonymised cohorts and reports")
    if action is Action.REGISTRY_EXPORT:
        if Role.COORDINATOR in actor.roles:
            return Decision(
                True, (f"{actor.name} coordinates network {actor.network}: its registry export",)
            )
        return _deny("only coordinators export their network's cases to registries")

    if not actor.roles & _CASE_ROLES:
        held = ", ".join(sorted(r.value for r in actor.roles)) or "no role"
        return _deny(f"role {held} never sees pseudonymised cases")

    if action is Action.CASE_CREATE:
        if Role.CLINICIAN in actor.roles:
            return Decision(True, ("clinicians create cases",))
        return _deny("only clinicians create cases")
    if action in (Action.PANEL_REPORTS, Action.EXPERT_SEARCH):
        if Role.COORDINATOR in actor.roles:
            return Decision(True, (f"{actor.name} coordinates network {actor.network}",))
        return _deny("only coordinators search experts and read panel reports")
    if action in (Action.CASE_LIST, Action.CASE_LOOKUP, Action.CASE_SIMILAR):
        # the listing itself is filtered per case by CASE_READ
        return Decision(True, ("lists only the cases the caller may read",))

    if case is None:
        raise ValueError(f"{action} needs a case")
    member = case.member_role(actor.name)

    if action in (Action.CASE_READ, Action.FILE_READ, Action.CONSENT_READ):
        if member in (MemberRole.OWNER, MemberRole.ASSISTANT):
            return Decision(True, (f"{actor.name} is the case's {member.value}",))
        if member is MemberRole.PANEL_MEMBER:
            why = f"{actor.name} is on the case's panel"
        elif (
            Role.COORDINATOR in actor.roles
            and actor.network == case.network
            and case.status is not CaseStatus.DRAFT
        ):
            why = f"{actor.name} coordinates network {case.network}"
        else:
            return _deny(f"{actor.name} is not a member of this case")
        if case.status is CaseStatus.DRAFT:
            return _deny("the case is a draft: only its owner and assistants see it")
        if ConsentScope.PANEL_DISCUSSION not in case.consent:
            if ConsentScope.PANEL_DISCUSSION in case.consent_withdrawn:
                return _deny("the patient withdrew consent to panel discussion: the case is frozen")
            return _deny("no consent to panel discussion is recorded for this case")
        return Decision(True, (why, "the patient consents to panel discussion"))

    if action is Action.ANNOTATION_WRITE:
        # the people discussing the case: its clinicians and its panel, not the network's
        # coordinators (who read the case to run the panel, not to review it)
        if member not in (MemberRole.OWNER, MemberRole.ASSISTANT, MemberRole.PANEL_MEMBER):
            return _deny(
                f"{actor.name} is not a member of this case: only its clinicians and panel annotate"
            )
        if case.status is CaseStatus.CLOSED:
            return _deny("the case is closed")
        read = decide(actor, Action.FILE_READ, case)  # draft and consent rules as for reading
        if not read.allowed:
            return read
        return Decision(True, (f"{actor.name} is the case's {member.value}", *read.reasons[1:]))

    if action is Action.CASE_EXPORT:
        # a whole case leaves the store: only the clinicians who hold it
        if member in (MemberRole.OWNER, MemberRole.ASSISTANT):
            return Decision(True, (f"{actor.name} is the case's {member.value}",))
        return _deny("only the case's owner and assistants export it")

    if action in (Action.CASE_UPDATE, Action.FILE_WRITE, Action.CONSENT_WRITE, Action.CASE_SUBMIT):
        if member in (MemberRole.OWNER, MemberRole.ASSISTANT):
            # submitting a closed case is refused by the lifecycle (409), with its reason
            if case.status is CaseStatus.CLOSED and action is not Action.CASE_SUBMIT:
                return _deny("the case is closed")
            return Decision(True, (f"{actor.name} is the case's {member.value}",))
        return _deny("only the case's owner and assistants change it")

    if action in _REVIEW_ACTIONS:
        return _decide_review(actor, action, case, member)

    raise ValueError(f"unknown action {action}")  # pragma: no cover


_REVIEW_ACTIONS = frozenset(
    {
        Action.PANEL_ASSEMBLE,
        Action.PANEL_MANAGE,
        Action.PANEL_VIEW,
        Action.REVIEW_READ,
        Action.REVIEW_WRITE,
        Action.INFO_READ,
        Action.INFO_ANSWER,
        Action.OUTCOME_READ,
        Action.FOLLOWUP_WRITE,
    }
)


def _consent_stands(case: CaseRef | Case) -> Decision | None:
    """None when the patient's consent to panel discussion stands, else the denial."""
    if ConsentScope.PANEL_DISCUSSION in case.consent:
        return None
    if ConsentScope.PANEL_DISCUSSION in case.consent_withdrawn:
        return _deny("the patient withdrew consent to panel discussion: the case is frozen")
    return _deny("no consent to panel discussion is recorded for this case")


def _decide_review(
    actor: Actor, action: Action, case: CaseRef | Case, member: MemberRole | None
) -> Decision:
    """Panel review. Coordinators act on their own network's cases only; panel members
    (guests from other networks too) on the cases they are on; owners see the panel's
    state, its requests to them and its outcome, not its internal discussion."""
    coordinates = Role.COORDINATOR in actor.roles and actor.network == case.network
    clinician = member in (MemberRole.OWNER, MemberRole.ASSISTANT)
    on_panel = member is MemberRole.PANEL_MEMBER
    # steps on a draft are refused by the lifecycle (409); reads by the policy
    reading = action in (
        Action.PANEL_VIEW,
        Action.REVIEW_READ,
        Action.INFO_READ,
        Action.OUTCOME_READ,
    )
    if case.status is CaseStatus.DRAFT and reading and not clinician:
        return _deny("the case is a draft: it has not been submitted to a panel")

    if action in (Action.PANEL_ASSEMBLE, Action.PANEL_MANAGE):
        if coordinates:
            return Decision(True, (f"{actor.name} coordinates network {case.network}",))
        if Role.COORDINATOR in actor.roles:
            return _deny(f"{actor.name} coordinates another network than {case.network}")
        return _deny("only the network's coordinators assemble and manage panels")

    if action is Action.PANEL_VIEW:
        # names, roles, dates and states only: no clinical content, no consent needed
        if coordinates:
            return Decision(True, (f"{actor.name} coordinates network {case.network}",))
        if clinician or on_panel:
            return Decision(True, (f"{actor.name} is the case's {member.value}",))
        return _deny(f"{actor.name} is neither on the panel nor a clinician of the case")

    if action is Action.INFO_ANSWER:
        if clinician:
            return Decision(True, (f"{actor.name} is the case's {member.value}",))
        return _deny("only the case's owner and assistants answer the panel's requests")

    if action is Action.FOLLOWUP_WRITE:
        # the clinicians who see the patient again; whether an outcome is signed is the
        # store's to check (409)
        if clinician:
            return Decision(True, (f"{actor.name} is the case's {member.value}",))
        return _deny("only the case's owner and assistants record the follow-up")

    if action in (Action.REVIEW_READ, Action.REVIEW_WRITE):
        if on_panel:
            why = f"{actor.name} is on the case's panel"
        elif coordinates and action is Action.REVIEW_READ:
            why = f"{actor.name} coordinates network {case.network}"
        elif action is Action.REVIEW_WRITE:
            return _deny(f"{actor.name} is not on the case's panel")
        else:
            return _deny(f"{actor.name} is neither on the panel nor the network's coordinator")
    else:  # INFO_READ, OUTCOME_READ
        if clinician:
            return Decision(True, (f"{actor.name} is the case's {member.value}",))
        if on_panel:
            why = f"{actor.name} is on the case's panel"
        elif coordinates:
            why = f"{actor.name} coordinates network {case.network}"
        else:
            return _deny(f"{actor.name} is not a member of this case")
    refused = _consent_stands(case)
    if refused is not None:
        return refused
    return Decision(True, (why, "the patient consents to panel discussion"))
