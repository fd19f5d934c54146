"""Panel review decisions as a table: role × relation × network × status × consent.

Written from the design's roles table: coordinators act on their own network's
cases only and never write opinions; panel members (guests from other networks
too) read and write on the cases they are on while consent stands; the case's
clinicians see the panel's state, its requests and its outcome and answer the
requests, not the internal discussion; everyone else is refused, with a reason.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from cpms_hub.domain import (
    AccountStatus,
    CaseMember,
    CaseRef,
    CaseStatus,
    ConsentScope,
    MemberRole,
    Role,
)
from cpms_hub.policy import ACTION_SCOPES, Action, Actor, decide

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ALL_SCOPES = frozenset(ACTION_SCOPES.values())
REVIEW = [
    Action.PANEL_ASSEMBLE,
    Action.PANEL_MANAGE,
    Action.PANEL_VIEW,
    Action.REVIEW_READ,
    Action.REVIEW_WRITE,
    Action.INFO_READ,
    Action.INFO_ANSWER,
    Action.OUTCOME_READ,
    Action.FOLLOWUP_WRITE,
]
READS = {Action.PANEL_VIEW, Action.REVIEW_READ, Action.INFO_READ, Action.OUTCOME_READ}
NEEDS_CONSENT = {Action.REVIEW_READ, Action.REVIEW_WRITE, Action.INFO_READ, Action.OUTCOME_READ}


def actor(role: Role, network: str) -> Actor:
    return Actor("me", frozenset({role}), "H", network, AccountStatus.ACTIVE, ALL_SCOPES)


def case(relation: str, status: CaseStatus, consent: bool) -> CaseRef:
    members = [CaseMember("owner", MemberRole.OWNER, NOW)]
    if relation != "none":
        members.append(CaseMember("me", MemberRole(relation), NOW))
    granted = frozenset({ConsentScope.PANEL_DISCUSSION}) if consent else frozenset()
    return CaseRef("c", "owner", "H", "N1", status, NOW, NOW, tuple(members), granted)


def expected(
    role: Role, action: Action, relation: str, network: str, status: CaseStatus, consent: bool
) -> bool:
    if role not in (Role.CLINICIAN, Role.PANEL_MEMBER, Role.COORDINATOR):
        return False
    clinician = relation in ("owner", "assistant")
    on_panel = relation == "panel-member"
    coordinates = role is Role.COORDINATOR and network == "N1"
    if status is CaseStatus.DRAFT and action in READS and not clinician:
        return False
    if action in (Action.PANEL_ASSEMBLE, Action.PANEL_MANAGE):
        return coordinates
    if action is Action.PANEL_VIEW:
        return coordinates or clinician or on_panel
    if action in (Action.INFO_ANSWER, Action.FOLLOWUP_WRITE):
        return clinician
    if action in (Action.INFO_READ, Action.OUTCOME_READ) and clinician:
        return True
    if action is Action.REVIEW_WRITE:
        allowed = on_panel
    elif action is Action.REVIEW_READ:
        allowed = on_panel or coordinates
    else:
        allowed = on_panel or coordinates
    return allowed and consent


ROWS = list(
    itertools.product(
        [Role.CLINICIAN, Role.PANEL_MEMBER, Role.COORDINATOR, Role.DATA_SCIENTIST, Role.HELPDESK],
        REVIEW,
        ["owner", "assistant", "panel-member", "none"],
        ["N1", "N2"],
        [CaseStatus.DRAFT, CaseStatus.IN_DISCUSSION, CaseStatus.CLOSED],
        [True, False],
    )
)


@pytest.mark.parametrize(("role", "action", "relation", "network", "status", "consent"), ROWS)
def test_review_decisions(
    role: Role, action: Action, relation: str, network: str, status: CaseStatus, consent: bool
) -> None:
    d = decide(actor(role, network), action, case(relation, status, consent))
    assert d.allowed is expected(role, action, relation, network, status, consent)
    assert d.reasons and all(isinstance(r, str) and r for r in d.reasons)


def test_coordinators_search_experts_and_read_reports() -> None:
    for action in (Action.EXPERT_SEARCH, Action.PANEL_REPORTS):
        assert decide(actor(Role.COORDINATOR, "N1"), action)
        refused = decide(actor(Role.PANEL_MEMBER, "N1"), action)
        assert not refused and "coordinators" in refused.reasons[0]


def test_the_reason_names_the_other_network() -> None:
    d = decide(
        actor(Role.COORDINATOR, "N2"),
        Action.PANEL_ASSEMBLE,
        case("none", CaseStatus.SUBMITTED, True),
    )
    assert not d and "another network" in d.reasons[0]
