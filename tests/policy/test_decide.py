"""The policy as a table: every role × action × relation × case status × consent state.

Each expectation is derived from a rule written out here in plain terms, so
that a change of policy shows up as a failing row with a reason.
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
CASE_ACTIONS = [
    Action.CASE_READ,
    Action.FILE_READ,
    Action.CONSENT_READ,
    Action.CASE_UPDATE,
    Action.FILE_WRITE,
    Action.CONSENT_WRITE,
    Action.CASE_SUBMIT,
    Action.ANNOTATION_WRITE,
]
READS = {Action.CASE_READ, Action.FILE_READ, Action.CONSENT_READ}
CONSENTS = {
    "granted": (frozenset({ConsentScope.PANEL_DISCUSSION}), frozenset()),
    "withdrawn": (frozenset(), frozenset({ConsentScope.PANEL_DISCUSSION})),
    "none": (frozenset(), frozenset()),
}


def actor(role: Role, name: str = "me", network: str = "N1", **kw) -> Actor:
    return Actor(
        name=name,
        roles=frozenset({role}),
        hospital="H",
        network=network,
        status=kw.get("status", AccountStatus.ACTIVE),
        scopes=kw.get("scopes", ALL_SCOPES),
    )


def case(relation: str, status: CaseStatus, consent: str) -> CaseRef:
    members = [CaseMember("owner", MemberRole.OWNER, NOW)]
    if relation in ("owner", "assistant", "panel-member"):
        members.append(CaseMember("me", MemberRole(relation), NOW))
    granted, withdrawn = CONSENTS[consent]
    return CaseRef("c", "owner", "H", "N1", status, NOW, NOW, tuple(members), granted, withdrawn)


def expected(role: Role, action: Action, relation: str, status: CaseStatus, consent: str) -> bool:
    if role not in (Role.CLINICIAN, Role.PANEL_MEMBER, Role.COORDINATOR):
        return False  # data scientists, helpdesk and auditors never see pseudonymised cases
    if action in READS:
        if relation in ("owner", "assistant"):
            return True
        reader = relation == "panel-member" or (role is Role.COORDINATOR and relation == "none")
        return reader and status is not CaseStatus.DRAFT and consent == "granted"
    if action is Action.ANNOTATION_WRITE:
        # the case's clinicians and its panel (as readers), while it is not closed
        if status is CaseStatus.CLOSED:
            return False
        if relation in ("owner", "assistant"):
            return True
        return (
            relation == "panel-member" and status is not CaseStatus.DRAFT and consent == "granted"
        )
    # writes: the case's own clinicians only, while it is not closed (whether a case can
    # be submitted is the lifecycle's call: a 409, not a policy refusal)
    open_or_submit = status is not CaseStatus.CLOSED or action is Action.CASE_SUBMIT
    return relation in ("owner", "assistant") and open_or_submit


ROWS = list(
    itertools.product(
        list(Role),
        CASE_ACTIONS,
        ["owner", "assistant", "panel-member", "none"],
        [CaseStatus.DRAFT, CaseStatus.SUBMITTED, CaseStatus.CLOSED],
        list(CONSENTS),
    )
)


@pytest.mark.parametrize(("role", "action", "relation", "status", "consent"), ROWS)
def test_decision_table(role, action, relation, status, consent) -> None:
    decision = decide(actor(role), action, case(relation, status, consent))
    assert decision.allowed is expected(role, action, relation, status, consent), decision.reasons
    assert decision.reasons and all(isinstance(r, str) and r for r in decision.reasons)


def test_withdrawn_consent_says_the_case_is_frozen() -> None:
    d = decide(
        actor(Role.PANEL_MEMBER),
        Action.CASE_READ,
        case("panel-member", CaseStatus.SUBMITTED, "withdrawn"),
    )
    assert not d.allowed and "frozen" in d.reasons[0]


def test_coordinator_of_another_network_is_refused() -> None:
    d = decide(
        actor(Role.COORDINATOR, network="N2"),
        Action.CASE_READ,
        case("none", CaseStatus.SUBMITTED, "granted"),
    )
    assert not d.allowed


@pytest.mark.parametrize("action", list(Action))
def test_a_token_without_the_scope_is_refused(action: Action) -> None:
    role = {Action.ACCOUNT_MANAGE: Role.HELPDESK, Action.AUDIT_READ: Role.AUDITOR}.get(
        action, Role.CLINICIAN
    )
    ref = case("owner", CaseStatus.DRAFT, "granted")
    d = decide(actor(role, scopes=ALL_SCOPES - {ACTION_SCOPES[action]}), action, ref)
    assert not d.allowed and "lacks scope" in d.reasons[0]


@pytest.mark.parametrize("status", [AccountStatus.DISABLED, AccountStatus.REQUESTED])
def test_inactive_accounts_are_refused_everything(status: AccountStatus) -> None:
    d = decide(
        actor(Role.CLINICIAN, status=status),
        Action.CASE_READ,
        case("owner", CaseStatus.DRAFT, "none"),
    )
    assert not d.allowed and status.value in d.reasons[0]
