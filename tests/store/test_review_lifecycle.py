"""The case lifecycle, exhaustively: every state × every action, in the table and in the store.

The expectations are written out here independently of
:data:`cpms_hub.domain.review.TRANSITIONS`, from the issue's lifecycle (draft →
submitted → panel assembled → in discussion → outcome drafted → outcome signed →
closed → reopened for follow-up). The store test then drives the real store through
each of the 8 × 13 pairs it exposes: an allowed step lands in the expected state, a
forbidden one is a 409 whose reason names the action and the state, and changes
nothing.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from cpms_hub.domain import CaseStatus, ConflictError
from cpms_hub.domain.review import (
    TRANSITIONS,
    EndorsementDecision,
    LifecycleAction,
    OutcomeDraft,
    allowed_actions,
    transition,
)
from cpms_hub.policy import Action
from cpms_hub.state import State
from cpms_hub.store import session_scope
from cpms_hub.store.review_schema import PanelMemberRow

from .review_world import World, make_world

S, A = CaseStatus, LifecycleAction
WORKING = {S.PANEL_ASSEMBLED, S.IN_DISCUSSION, S.OUTCOME_DRAFTED, S.REOPENED}
#: the lifecycle as the issue states it: (state, action) -> next state
EXPECTED: dict[tuple[CaseStatus, LifecycleAction], CaseStatus] = {
    (S.DRAFT, A.SUBMIT): S.SUBMITTED,
    (S.SUBMITTED, A.ASSEMBLE): S.PANEL_ASSEMBLED,
    (S.PANEL_ASSEMBLED, A.ASSEMBLE): S.PANEL_ASSEMBLED,
    (S.IN_DISCUSSION, A.ASSEMBLE): S.IN_DISCUSSION,
    (S.REOPENED, A.ASSEMBLE): S.REOPENED,
    (S.PANEL_ASSEMBLED, A.START_DISCUSSION): S.IN_DISCUSSION,
    (S.REOPENED, A.START_DISCUSSION): S.IN_DISCUSSION,
    (S.PANEL_ASSEMBLED, A.RESPOND_INVITATION): S.PANEL_ASSEMBLED,
    (S.IN_DISCUSSION, A.RESPOND_INVITATION): S.IN_DISCUSSION,
    (S.REOPENED, A.RESPOND_INVITATION): S.REOPENED,
    (S.PANEL_ASSEMBLED, A.CONTRIBUTE): S.IN_DISCUSSION,
    (S.IN_DISCUSSION, A.CONTRIBUTE): S.IN_DISCUSSION,
    (S.REOPENED, A.CONTRIBUTE): S.IN_DISCUSSION,
    (S.PANEL_ASSEMBLED, A.DISCUSS): S.IN_DISCUSSION,
    (S.IN_DISCUSSION, A.DISCUSS): S.IN_DISCUSSION,
    (S.OUTCOME_DRAFTED, A.DISCUSS): S.OUTCOME_DRAFTED,
    (S.REOPENED, A.DISCUSS): S.IN_DISCUSSION,
    **{(s, A.REQUEST_INFORMATION): s for s in WORKING},
    **{(s, A.ANSWER_INFORMATION): s for s in WORKING},
    **{(s, A.SCHEDULE_MEETING): s for s in WORKING},
    (S.IN_DISCUSSION, A.DRAFT_OUTCOME): S.OUTCOME_DRAFTED,
    (S.OUTCOME_DRAFTED, A.DRAFT_OUTCOME): S.OUTCOME_DRAFTED,
    (S.OUTCOME_DRAFTED, A.ENDORSE): S.OUTCOME_DRAFTED,
    (S.OUTCOME_DRAFTED, A.SEAL_OUTCOME): S.OUTCOME_SIGNED,
    **{(s, A.CLOSE): S.CLOSED for s in (*WORKING, S.OUTCOME_SIGNED)},
    (S.CLOSED, A.REOPEN): S.REOPENED,
}
PAIRS = list(itertools.product(CaseStatus, LifecycleAction))


def test_the_table_is_the_issues_lifecycle() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("state", "action"), PAIRS, ids=[f"{s}-{a}" for s, a in PAIRS])
def test_every_state_and_action(state: CaseStatus, action: LifecycleAction) -> None:
    if (state, action) in EXPECTED:
        assert transition(state, action) is EXPECTED[(state, action)]
        assert action in allowed_actions(state)
    else:
        with pytest.raises(ConflictError) as err:
            transition(state, action)
        reason = err.value.reasons[0]
        assert f"cannot {action.value} a case that is {state.value}" in reason
        assert action not in allowed_actions(state)


def test_the_happy_path_reaches_every_state() -> None:
    path = [
        A.SUBMIT,
        A.ASSEMBLE,
        A.START_DISCUSSION,
        A.DRAFT_OUTCOME,
        A.SEAL_OUTCOME,
        A.CLOSE,
        A.REOPEN,
    ]
    state, seen = S.DRAFT, [S.DRAFT]
    for step in path:
        state = transition(state, step)
        seen.append(state)
    assert set(seen) == set(CaseStatus)


# -- the store enforces the same table ----------------------------------------------

DRAFT = OutcomeDraft("ORPHA:558", "Marfan syndrome", ("echo",), "plan", datetime(2027, 1, 1).date())
#: the store's entry point for each action it exposes (SEAL_OUTCOME is internal)
STORE_ACTIONS = [a for a in LifecycleAction if a is not A.SEAL_OUTCOME]


def _prepare(world: World) -> dict:
    """Panel of two (both accepted), one opinion, an open request, an outcome v1."""
    review = world.state.review
    world.assemble()
    world.accept("lead")
    world.accept("expert")
    review.put_contribution(world.case_id, "opinion", **world.as_("lead", Action.REVIEW_WRITE))
    req = review.request_information(world.case_id, "q?", **world.as_("lead", Action.REVIEW_WRITE))
    review.draft_outcome(world.case_id, DRAFT, **world.as_("lead", Action.REVIEW_WRITE))
    return {"request_ids": [req.id]}


def _attempt(world: World, action: LifecycleAction, state: CaseStatus, scratch: dict) -> None:
    review, cid = world.state.review, world.case_id
    if action is A.SUBMIT:
        world.state.cases.submit(
            cid, problems=lambda *_: [], **world.as_("owner", Action.CASE_SUBMIT)
        )
    elif action is A.ASSEMBLE:
        world.assemble()
    elif action is A.START_DISCUSSION:
        review.panel_action(cid, "start-discussion", **world.as_("coord", Action.PANEL_MANAGE))
    elif action is A.RESPOND_INVITATION:
        with session_scope(world.state.sessions) as s:
            s.get(PanelMemberRow, (cid, "expert")).status = "invited"
        try:
            world.accept("expert")
        finally:
            with session_scope(world.state.sessions) as s:
                s.get(PanelMemberRow, (cid, "expert")).status = "accepted"
    elif action is A.CONTRIBUTE:
        review.put_contribution(cid, "opinion 2", **world.as_("expert", Action.REVIEW_WRITE))
    elif action is A.DISCUSS:
        review.post_message(cid, "a message", **world.as_("expert", Action.REVIEW_WRITE))
    elif action is A.REQUEST_INFORMATION:
        review.request_information(cid, "more?", **world.as_("expert", Action.REVIEW_WRITE))
    elif action is A.ANSWER_INFORMATION:
        # a fresh open request, asked while the panel was working
        world.set_status(S.IN_DISCUSSION)
        req = review.request_information(cid, "q?", **world.as_("lead", Action.REVIEW_WRITE))
        world.set_status(state)
        review.answer_information(
            cid, req.id, "an answer", **world.as_("owner", Action.INFO_ANSWER)
        )
    elif action is A.SCHEDULE_MEETING:
        review.schedule_meeting(
            cid,
            title="meeting",
            starts_at=datetime.now(UTC) + timedelta(days=1),
            duration_minutes=30,
            **world.as_("expert", Action.REVIEW_WRITE),
        )
    elif action is A.DRAFT_OUTCOME:
        review.draft_outcome(cid, DRAFT, **world.as_("lead", Action.REVIEW_WRITE))
    elif action is A.ENDORSE:
        # a new version nobody has signed yet
        world.set_status(S.OUTCOME_DRAFTED)
        review.draft_outcome(cid, DRAFT, **world.as_("lead", Action.REVIEW_WRITE))
        world.set_status(state)
        review.endorse(
            cid,
            decision=EndorsementDecision.ENDORSE,
            reason="",
            **world.as_("expert", Action.REVIEW_WRITE),
        )
    elif action is A.CLOSE:
        review.panel_action(cid, "close", **world.as_("coord", Action.PANEL_MANAGE))
    elif action is A.REOPEN:
        review.panel_action(cid, "reopen", **world.as_("coord", Action.PANEL_MANAGE))
    else:  # pragma: no cover
        raise AssertionError(action)


def test_the_store_enforces_every_state_and_action(backend: State) -> None:
    world = make_world(backend)
    scratch = _prepare(world)
    checked = 0
    for state, action in itertools.product(CaseStatus, STORE_ACTIONS):
        world.set_status(state)
        expected = EXPECTED.get((state, action))
        if expected is None:
            with pytest.raises(ConflictError) as err:
                _attempt(world, action, state, scratch)
            assert f"cannot {action.value} a case that is {state.value}" in err.value.reasons[0], (
                state,
                action,
            )
            assert world.status() is state, (state, action)
        else:
            _attempt(world, action, state, scratch)
            assert world.status() is expected, (state, action)
        checked += 1
    assert checked == len(CaseStatus) * len(STORE_ACTIONS) == 8 * 13
