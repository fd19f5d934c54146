"""The review apps without a browser: set parameters, call the actions, read the state.

Each app is built with a :class:`CaseStoreClient` of a test account against the
session's real deployment (hub, proxy, store), exactly as the ``cpms-review``
service builds it with the signed-in user's token; nothing of ours is mocked.
The coordinator ``coord-n`` assembles a panel of two for a case of ``clin-a``:
``panel-p`` (lead) and a second expert; both accept in their inbox, contribute
and discuss in the workspace, ask the owner a question (answered in the
owner's workspace), hold a meeting, and the lead drafts the outcome; both
sign with a TOTP step-up. Refusals appear in ``status.error`` with the
store's reasons and leave nothing behind.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from cpms_hub.domain import CaseStatus
from cpms_widgets import CaseStoreClient
from tests.review_cases import submitted_case

pytestmark = pytest.mark.deployment

pn = pytest.importorskip("panel")


@pytest.fixture(scope="module")
def second_expert(deployment):
    acc = deployment.add_account(
        "expert-e", ("panel-member",), hospital="Hospital K", network="ERN-TEST"
    )
    return acc


@pytest.fixture(scope="module")
def clients(deployment, tokens, second_expert):
    made = {name: CaseStoreClient(deployment.api, tok) for name, tok in tokens.items()}
    made["expert-e"] = CaseStoreClient(deployment.api, deployment.token("expert-e"))
    yield made
    for c in made.values():
        c.close()


@pytest.fixture(scope="module")
def case(clients):
    return submitted_case(clients["clin-a"])


def _render(viewer) -> None:
    """Build the Bokeh models of a viewer, as a page load does (no browser)."""
    pn.panel(viewer).get_root()


def test_home_picks_the_app_from_roles_and_url(clients, case):
    from cpms_widgets.apps import CoordinatorDashboard, MemberInbox, ReviewHome, ReviewWorkspace

    home = ReviewHome(clients["panel-p"])
    assert home.user == "panel-p" and isinstance(home.app, MemberInbox)
    home = ReviewHome(clients["coord-n"])
    assert isinstance(home.app, CoordinatorDashboard)
    home.param.update(view="case", case_id=case.id)
    assert isinstance(home.app, ReviewWorkspace)
    _render(home)


def test_coordinator_assembles_a_panel_of_two(clients, case, second_expert):
    from cpms_widgets.apps import CoordinatorDashboard

    dash = CoordinatorDashboard(clients["coord-n"], user="coord-n")
    assert case.id in {c["case_id"] for c in dash.cases}
    dash.select(case.id)
    found = dash.search("", network="ERN-TEST")
    assert {"panel-p", "expert-e"} <= {e["name"] for e in found}

    # a deadline in the past: refused with the reason, no panel made
    dash.add_member("panel-p", "lead")
    dash.add_member("expert-e", "member")
    dash.deadline = date.today() - timedelta(days=1)
    assert not dash.assemble()
    assert "deadline" in dash.status.error
    assert clients["clin-a"].get_case(case.id).status is CaseStatus.SUBMITTED

    dash.deadline = date.today() + timedelta(days=14)
    dash.urgency = "urgent"
    assert dash.assemble(), dash.status.error
    assert dash.panel is not None and dash.panel.lead == "panel-p"
    assert {m.user for m in dash.panel.members} == {"panel-p", "expert-e"}
    assert dash.panel.urgency.value == "urgent"
    _render(dash)


def test_members_accept_or_decline_in_the_inbox(clients, case):
    from cpms_widgets.apps import MemberInbox

    inbox = MemberInbox(clients["expert-e"], user="expert-e")
    assert case.id in {i.case_id for i in inbox.pending()}
    # declining needs a reason; nothing is sent without one
    assert not inbox.decline(case.id, "  ")
    assert "reason" in inbox.status.error
    assert inbox.accept(case.id), inbox.status.error
    assert case.id not in {i.case_id for i in inbox.pending()}

    lead = MemberInbox(clients["panel-p"], user="panel-p")
    assert lead.accept(case.id), lead.status.error
    assert case.id in {p["case_id"] for p in lead.panels}
    _render(lead)


def test_workspace_shows_the_case_and_takes_contributions(clients, case):
    from cpms_widgets.apps import ReviewWorkspace

    ws = ReviewWorkspace(clients["panel-p"], case_id=case.id, user="panel-p")
    assert ws.case.title == case.title
    assert ws.case.content.phenotypes[0].label == "Seizure"
    assert ws.consent["granted"] == ["panel-discussion"]
    assert [f.name for f in ws.files] == ["consent-signed.pdf"]
    assert ws.is_lead and ws.contribution_editable

    # an empty contribution is refused and nothing is stored
    assert not ws.save_contribution("   ")
    assert ws.status.error
    assert clients["panel-p"].my_contribution(case.id) is None

    ws.contribution_text = "Consistent with Dravet syndrome; avoid sodium-channel blockers."
    assert ws.save_contribution(), ws.status.error
    assert [c.author for c in ws.contributions] == ["panel-p"]

    other = ReviewWorkspace(clients["expert-e"], case_id=case.id, user="expert-e")
    assert other.save_contribution("Agree; consider stiripentol."), other.status.error
    assert len(other.contributions) == 2
    _render(other)


def test_threaded_discussion_with_mentions(clients, case):
    from cpms_widgets.apps import ReviewWorkspace
    from cpms_widgets.apps.workspace import thread_order

    ws = ReviewWorkspace(clients["panel-p"], case_id=case.id, user="panel-p")
    ws.message_text = "What dose would you start with, @expert-e?"
    assert ws.post_message(), ws.status.error
    first = ws.messages[-1]
    assert first.mentions == ("expert-e",)

    other = ReviewWorkspace(clients["expert-e"], case_id=case.id, user="expert-e")
    other.reply_to = first.id
    assert other.post_message("Low, titrated weekly."), other.status.error
    ordered = thread_order(other.messages)
    assert [(d, m.parent_id) for d, m in ordered][-1] == (1, first.id)
    notes = clients["expert-e"].notifications()
    assert any(n.kind.value == "mention" and n.case_id == case.id for n in notes)

    # someone not on the panel cannot post
    outsider = ReviewWorkspace(clients["clin-b"], case_id=case.id, user="clin-b", load=False)
    assert not outsider.post_message("hello")
    assert outsider.status.error


def test_request_for_information_answered_by_the_owner(clients, case):
    from cpms_widgets.apps import ReviewWorkspace

    ws = ReviewWorkspace(clients["expert-e"], case_id=case.id, user="expert-e")
    assert ws.request_information("Is there an EEG during fever?"), ws.status.error
    req = ws.requests[-1]
    assert req.answer is None

    owner = ReviewWorkspace(clients["clin-a"], case_id=case.id, user="clin-a")
    assert owner.is_owner
    assert owner.answer_information(req.id, "Yes, attached next week."), owner.status.error
    assert owner.requests[-1].answer == "Yes, attached next week."


def test_meeting_with_time_zones_ics_and_minutes(clients, case):
    from cpms_widgets.apps import ReviewWorkspace
    from cpms_widgets.apps.workspace import local_times

    ws = ReviewWorkspace(clients["panel-p"], case_id=case.id, user="panel-p")
    # in the past: refused
    assert not ws.schedule_meeting("Late", datetime.now(UTC) - timedelta(hours=1), 30)
    assert ws.status.error
    start = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    assert ws.schedule_meeting("Panel meeting", start, 45), ws.status.error
    meeting = ws.meetings[-1]
    assert meeting.starts_at == start
    rows = local_times(meeting)
    assert {u for u, _tz, _t in rows} >= {"panel-p", "expert-e"}
    ics = ws.meeting_ics(meeting.id)
    assert ics.startswith("BEGIN:VCALENDAR") and "BEGIN:VEVENT" in ics
    assert ws.record_meeting(meeting.id, ["panel-p", "expert-e"], "Agreed on Dravet."), (
        ws.status.error
    )
    assert ws.meetings[-1].attended == ("panel-p", "expert-e")
    _render(ws)


def test_lead_drafts_and_both_sign_with_step_up(deployment, clients, case):
    from cpms_widgets.apps import ReviewWorkspace

    member = ReviewWorkspace(clients["expert-e"], case_id=case.id, user="expert-e")
    assert not member.is_lead
    # a bad code is refused in the app before anything is sent
    lead = ReviewWorkspace(clients["panel-p"], case_id=case.id, user="panel-p")
    assert not lead.draft_outcome(
        diagnosis_code="33069",
        diagnosis_label="Dravet syndrome",
        investigations=["EEG"],
        treatment_plan="Valproate.",
        follow_up=date.today() + timedelta(days=90),
    )
    assert "diagnosis_code" in lead.status.error
    assert lead.outcome is None

    assert lead.draft_outcome(
        diagnosis_code="ORPHA:33069",
        diagnosis_label="Dravet syndrome",
        investigations=["Video-EEG", "SCN1A segregation in parents"],
        treatment_plan="Valproate and clobazam; avoid sodium-channel blockers.",
        follow_up=date.today() + timedelta(days=90),
    ), lead.status.error
    assert lead.case.status is CaseStatus.OUTCOME_DRAFTED
    assert set(lead.outcome["pending"]) == {"panel-p", "expert-e"}
    # contributions are frozen now
    assert not lead.contribution_editable

    # a wrong authenticator code does not sign
    assert not lead.endorse("000000")
    assert lead.status.error
    assert lead.endorse(deployment.accounts["panel-p"].code()), lead.status.error
    # signing twice is refused
    assert not lead.endorse(deployment.accounts["panel-p"].code())

    member.refresh()
    assert member.endorse(deployment.accounts["expert-e"].code()), member.status.error
    assert member.outcome["signed"]
    assert member.case.status is CaseStatus.OUTCOME_SIGNED
    _render(member)

    # the case owner reads it in their workspace and downloads the report
    owner = ReviewWorkspace(clients["clin-a"], case_id=case.id, user="clin-a")
    assert owner.outcome["signed"] and owner.outcome["diagnosis_code"] == "ORPHA:33069"
    assert owner._outcome_pdf().read().startswith(b"%PDF-")


def test_coordinator_monitors_reports_and_closes(clients, case):
    from cpms_widgets.apps import CoordinatorDashboard
    from cpms_widgets.apps.activity_charts import activity_figures

    dash = CoordinatorDashboard(clients["coord-n"], user="coord-n")
    assert set(dash.monitor) >= {"open", "overdue", "few_contributions"}
    dash.select(case.id)
    assert dash.lifecycle("close"), dash.status.error
    assert dash.panel.status is CaseStatus.CLOSED
    # closing twice is a conflict, with the lifecycle's reason
    assert not dash.lifecycle("close")
    assert "closed" in dash.status.error
    assert dash.lifecycle("reopen"), dash.status.error
    assert dash.panel.status is CaseStatus.REOPENED
    figs = activity_figures(dash.activity)
    assert [f.name for f in figs] == [
        "cases_per_month",
        "time_to_closure",
        "contributions_per_panel",
        "by_network",
    ]
    _render(dash)

    # another network's coordinator does not see the case
    other = CoordinatorDashboard(clients["coord-x"], user="coord-x")
    assert case.id not in {c["case_id"] for c in other.cases}
