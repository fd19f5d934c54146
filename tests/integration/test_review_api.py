"""Panel review through the real hub, proxy and store, with a local SMTP server.

One deployment for the module, with ``CPMS_SMTP_*`` pointing at an aiosmtpd server on
a free loopback port. The journey: the owner submits a case; the helpdesk records
experts' expertise; the coordinator finds them and assembles a panel of two; both
accept, contribute and discuss; the owner answers a request for more information
from Python; a meeting is scheduled and exported as .ics; the lead drafts the
outcome; both sign with their authenticator code as step-up; the owner reads the
outcome, downloads the PDF and exports FHIR; ``cpms-admin verify-outcome`` passes,
and fails once a byte of the stored outcome is changed. Bad input and wrong people
get clear errors along the way; the e-mails carry no patient data.
"""

from __future__ import annotations

import email
import email.policy
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from cpms_hub.domain import (
    CaseContent,
    CaseStatus,
    ConflictError,
    ConsentScope,
    Diagnosis,
    Patient,
    PermissionDeniedError,
    Phenotype,
    ValidationError,
)
from cpms_hub.domain.review import EndorsementDecision, InvitationStatus, OutcomeDraft
from cpms_widgets import CaseStoreClient
from tests.deployment import Deployment, free_port
from tests.samples import tiny_pdf

pytestmark = pytest.mark.deployment

PEOPLE = {
    "owner-o": (("clinician",), "Hospital A", "ERN-TEST"),
    "other-c": (("clinician",), "Hospital B", "ERN-TEST"),
    "lead-l": (("panel-member",), "Hospital C", "ERN-TEST"),
    "member-m": (("panel-member",), "Hospital D", "ERN-TEST"),
    "guest-g": (("panel-member",), "Hospital E", "ERN-OTHER"),
    "coord-c": (("coordinator",), "Hospital F", "ERN-TEST"),
    "coord-x": (("coordinator",), "Hospital G", "ERN-OTHER"),
    "help-h": (("helpdesk",), "Office", "ERN-TEST"),
}
TITLE = "Boy, 7, tall stature and lens dislocation"
SUMMARY = "Invented case: aortic root dilatation at 7 years."
QUESTION = "Marfan or homocystinuria? Which tests first?"
PSEUDONYM = f"REVIEW-{uuid.uuid4().hex[:8]}"
OUTCOME = OutcomeDraft(
    diagnosis_code="ORPHA:558",
    diagnosis_label="Marfan syndrome",
    investigations=("FBN1 sequencing", "echocardiography every 6 months"),
    treatment_plan="Beta blocker; avoid contact sports.",
    follow_up=date.today() + timedelta(days=180),
    summary="The panel favours Marfan syndrome.",
)


class Inbox:
    """Collects every message the SMTP server receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        # headers and the decoded body: what a reader would see
        text = "".join(f"{k}: {v}\n" for k, v in msg.items()) + msg.get_content()
        self.messages.append((list(envelope.rcpt_tos), text))
        return "250 OK"


@pytest.fixture(scope="module")
def smtp():  # noqa: ANN201
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory, smtp):  # noqa: ANN001, ANN201
    controller, _ = smtp
    d = Deployment(
        tmp_path_factory.mktemp("review"),
        extra_env={
            "CPMS_SMTP_HOST": "127.0.0.1",
            "CPMS_SMTP_PORT": str(controller.port),
            "CPMS_SMTP_SENDER": "cpms@example.org",
            "CPMS_MAIL_INTERVAL": "1",
        },
    )
    d.init()
    for name, (roles, hospital, network) in PEOPLE.items():
        d.add_account(name, roles, hospital=hospital, network=network)
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def clients(dep: Deployment):  # noqa: ANN201
    out = {name: CaseStoreClient(dep.direct_api, dep.token(name)) for name in PEOPLE}
    yield out
    for c in out.values():
        c.close()


@pytest.fixture(scope="module")
def case_id(clients) -> str:  # noqa: ANN001
    owner = clients["owner-o"]
    content = CaseContent(
        patient=Patient(PSEUDONYM, sex="male", birth_year=2019, country="FR"),
        phenotypes=(Phenotype("HP:0001166", "Arachnodactyla"),),
        diagnoses=(Diagnosis("ORPHA", "ORPHA:558", "Marfan syndrome"),),
        question=QUESTION,
        urgency="urgent",
    )
    case = owner.create_case(TITLE, SUMMARY, content=content)
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "consent.pdf"
        pdf.write_bytes(tiny_pdf())
        form = owner.upload(case.id, pdf, media_type="application/pdf")
    owner.record_consent(
        case.id,
        scopes=[ConsentScope.PANEL_DISCUSSION],
        form_version="v2",
        language="fr",
        signed_on=date.today(),
        form_file_id=form.id,
    )
    owner.submit(case.id)
    return case.id


def test_a_panel_reviews_and_signs_a_case(dep: Deployment, clients, case_id: str, smtp) -> None:  # noqa: ANN001
    owner, coord, lead, member = (
        clients["owner-o"],
        clients["coord-c"],
        clients["lead-l"],
        clients["member-m"],
    )
    # the helpdesk records expertise; the coordinator searches by it
    clients["help-h"].set_expertise("lead-l", ["ORPHA:558", "cardiogenetics"], "Europe/Paris")
    clients["help-h"].set_expertise("guest-g", ["ORPHA:558"], "America/New_York")
    found = coord.search_experts("orpha:558")
    assert {e["name"] for e in found} == {"lead-l", "guest-g"}
    assert coord.search_experts("orpha:558", network="ERN-TEST")[0]["expertise"] == [
        "ORPHA:558",
        "cardiogenetics",
    ]
    with pytest.raises(PermissionDeniedError):
        lead.search_experts("marfan")

    # the coordinator sees the submitted case in their network, not clinical content
    network = coord.list_panels("network")
    assert [p["case_id"] for p in network] == [case_id]
    assert network[0]["status"] == "submitted"

    # a deadline in the past, a coordinator of another network: refused, nothing made
    with pytest.raises(ValidationError) as err:
        coord.assemble_panel(
            case_id, [("lead-l", "lead")], deadline=date.today() - timedelta(days=1)
        )
    assert err.value.field == "deadline"
    with pytest.raises(PermissionDeniedError):
        clients["coord-x"].assemble_panel(
            case_id, [("lead-l", "lead")], deadline=date.today() + timedelta(days=10)
        )
    assert owner.get_case(case_id).status is CaseStatus.SUBMITTED

    panel = coord.assemble_panel(
        case_id,
        [("lead-l", "lead"), ("member-m", "member")],
        urgency="urgent",
        deadline=date.today() + timedelta(days=14),
    )
    assert panel.lead == "lead-l" and panel.status is CaseStatus.PANEL_ASSEMBLED

    # invitations; accepting; the case is readable to the panel now
    assert [i.case_id for i in member.invitations()] == [case_id]
    assert lead.accept_invitation(case_id).status is InvitationStatus.ACCEPTED
    member.accept_invitation(case_id)
    assert member.get_case(case_id).title == TITLE

    # contributions and discussion
    with pytest.raises(ValidationError) as err:
        lead.contribute(case_id, "   ")
    assert err.value.field == "body"
    lead.contribute(case_id, "Ghent criteria met; FBN1 likely.")
    member.contribute(case_id, "Exclude homocystinuria first.")
    assert {c.author for c in coord.contributions(case_id)} == {"lead-l", "member-m"}
    first = lead.post_message(case_id, "Agree on testing order?", mentions=["member-m"])
    member.post_message(case_id, "Yes: amino acids, then FBN1.", parent_id=first.id)
    assert [m.parent_id for m in lead.messages(case_id)] == [None, first.id]
    with pytest.raises(PermissionDeniedError):
        clients["other-c"].post_message(case_id, "let me in")
    with pytest.raises(PermissionDeniedError):
        owner.messages(case_id)  # the discussion is the panel's own

    # a request for more information, answered by the owner from Python
    req = member.request_information(case_id, "Plasma homocysteine level?")
    asked = owner.information_requests(case_id)
    assert [r.question for r in asked] == ["Plasma homocysteine level?"]
    answered = owner.answer_information_request(case_id, req.id, "Normal (8 umol/L).")
    assert answered.answered_by == "owner-o"

    # a meeting, with each participant's time zone, as an .ics
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    meeting = lead.schedule_meeting(case_id, "Panel meeting", starts, 45)
    assert dict(meeting.participants) == {"lead-l": "Europe/Paris", "member-m": "UTC"}
    ics = member.meeting_ics(case_id, meeting.id)
    assert "BEGIN:VEVENT" in ics and f"UID:{meeting.id}@cpms" in ics
    lead.record_meeting(case_id, meeting.id, ["lead-l", "member-m"], "Agreed: Marfan.")

    # the outcome: the lead drafts; a member cannot
    with pytest.raises(PermissionDeniedError):
        member.draft_outcome(case_id, OUTCOME)
    drafted = lead.draft_outcome(case_id, OUTCOME)
    assert drafted.version == 1 and not drafted.signed
    with pytest.raises(ConflictError):
        member.contribute(case_id, "too late")

    # signing needs the authenticator code; a stolen token alone cannot sign
    with pytest.raises(PermissionDeniedError) as err:
        member.endorse_outcome(case_id, totp="000000")
    assert "totp" in err.value.reasons[0]
    lead.endorse_outcome(case_id, totp=dep.accounts["lead-l"].code())
    with pytest.raises(ConflictError) as err:
        lead.endorse_outcome(case_id, totp=dep.accounts["lead-l"].code())
    assert "already signed" in err.value.reasons[0]
    signed = member.endorse_outcome(
        case_id,
        totp=dep.accounts["member-m"].code(),
        decision=EndorsementDecision.ENDORSE,
    )
    assert signed.signed and {e.signer for e in signed.endorsements} == {"lead-l", "member-m"}

    # the owner reads it in Python, downloads the report and exports FHIR
    outcome = owner.outcome(case_id)
    assert outcome.signed and outcome.draft == OUTCOME
    assert owner.get_case(case_id).status is CaseStatus.OUTCOME_SIGNED
    pdf = owner.outcome_pdf(case_id)
    assert pdf.startswith(b"%PDF") and pdf == owner.outcome_pdf(case_id)
    assert PSEUDONYM.encode() not in pdf and TITLE.encode() not in pdf
    bundle = owner.export_fhir(case_id)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert "CarePlan" in kinds and "Provenance" in kinds

    # verify-outcome passes, and fails once a byte of the stored outcome changes
    ok = dep.admin("verify-outcome", case_id)
    assert "every signature verifies" in ok.stdout
    _flip_a_byte_of_the_outcome(dep, case_id)
    bad = dep.admin("verify-outcome", case_id, check=False)
    assert bad.returncode == 1 and "outcome" in bad.stderr

    # the coordinator closes the panel; closing twice is a 409 with the reason
    coord.close_panel(case_id)
    with pytest.raises(ConflictError) as err:
        coord.close_panel(case_id)
    assert "cannot close a case that is closed" in err.value.reasons[0]

    # notifications and e-mails: kinds and links, never patient data
    kinds = {n.kind.value for n in owner.notifications()}
    assert {"information-request", "outcome-signed"} <= kinds
    _, inbox = smtp
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(inbox.messages) < 4:
        time.sleep(0.5)
    recipients = {r for rcpts, _ in inbox.messages for r in rcpts}
    assert {"lead-l@example.org", "member-m@example.org", "owner-o@example.org"} <= recipients
    for _, text in inbox.messages:
        for secret in (TITLE, SUMMARY, QUESTION, PSEUDONYM, "Marfan", "homocyst"):
            assert secret not in text
        assert case_id in text  # the link: a random id


def test_reports_are_aggregates_for_the_coordinator_only(clients, case_id: str) -> None:  # noqa: ANN001
    monitor = clients["coord-c"].monitor_report()
    assert set(monitor) == {"open", "overdue", "few_contributions"}
    activity = clients["coord-c"].activity_report()
    assert {"cases_per_month", "time_to_closure", "contributions_per_panel", "by_network"} <= set(
        activity
    )
    text = str(monitor) + str(activity)
    assert TITLE not in text and PSEUDONYM not in text
    with pytest.raises(PermissionDeniedError):
        clients["lead-l"].monitor_report()


def test_review_routes_need_a_token(dep: Deployment, case_id: str) -> None:
    resp = httpx.get(f"{dep.direct_api}/cases/{case_id}/outcome", trust_env=False)
    assert resp.status_code == 401
    assert resp.json()["status"] == 401


def _flip_a_byte_of_the_outcome(dep: Deployment, case_id: str) -> None:
    from cpms_hub.store import session_scope
    from cpms_hub.store.review_schema import OutcomeRow

    state = dep.open_state()
    try:
        with session_scope(state.sessions) as s:
            row = s.get(OutcomeRow, case_id)
            blob = bytearray(row.document_enc)
            blob[len(blob) // 2] ^= 0x01
            row.document_enc = bytes(blob)
    finally:
        state.close()
