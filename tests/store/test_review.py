"""Panel review in the store, on SQLite and PostgreSQL: assembling, invitations, opinions,
discussion, requests for information, meetings, signed outcomes, notifications, reports.

Bad input gets a clear error naming the field and leaves nothing behind; every read
and write of review content is audited; review texts are stored only encrypted.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cpms_hub.crypto import FieldCipher, signing
from cpms_hub.domain import (
    CaseStatus,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    Urgency,
    ValidationError,
)
from cpms_hub.domain.review import (
    EndorsementDecision,
    InvitationStatus,
    NotificationKind,
    OutcomeDraft,
    PanelMemberSpec,
    PanelRole,
    canonical_json,
    signed_statement,
)
from cpms_hub.policy import Action
from cpms_hub.state import State
from cpms_hub.store import session_scope
from cpms_hub.store.keys import case_key_id
from cpms_hub.store.review_schema import (
    ContributionRow,
    MailOutboxRow,
    MessageRow,
    OutcomeRow,
    PanelMemberRow,
    SigningKeyRow,
)
from cpms_hub.store.schema import AuditRow

from .review_world import World, make_world

DRAFT = OutcomeDraft(
    diagnosis_code="ORPHA:558",
    diagnosis_label="Marfan syndrome",
    investigations=("echocardiography", "FBN1 sequencing"),
    treatment_plan="beta blockers; yearly aortic imaging",
    follow_up=date(2027, 6, 1),
    summary="The panel agrees on Marfan syndrome.",
)


@pytest.fixture
def world(backend: State) -> World:
    return make_world(backend)


def discussing(world: World) -> World:
    world.assemble()
    world.accept("lead")
    world.accept("expert")
    return world


def audit_actions(state: State, case_id: str) -> list[str]:
    with session_scope(state.sessions, write=False) as s:
        return list(
            s.scalars(
                select(AuditRow.action).where(AuditRow.case_id == case_id).order_by(AuditRow.seq)
            )
        )


# -- assembling ---------------------------------------------------------------------


def test_assembling_invites_members_who_then_read_the_case(world: World) -> None:
    panel = world.assemble()
    assert world.status() is CaseStatus.PANEL_ASSEMBLED
    assert panel.lead == "lead"
    assert {m.user: m.status for m in panel.members} == {
        "lead": InvitationStatus.INVITED,
        "expert": InvitationStatus.INVITED,
    }
    case = world.state.cases.read_case(world.case_id, **world.as_("expert", Action.CASE_READ))
    assert case.title == "Review case"
    invitations = world.state.review.invitations("expert")
    assert [i.case_id for i in invitations] == [world.case_id]
    assert invitations[0].urgency is Urgency.URGENT
    kinds = [n.kind for n in world.state.review.notifications("expert")]
    assert kinds == [NotificationKind.INVITATION]


@pytest.mark.parametrize(
    ("members", "field", "fragment"),
    [
        ([], "members", "at least one"),
        ([PanelMemberSpec("expert")], "members", "exactly one member must be the lead"),
        (
            [PanelMemberSpec("lead", PanelRole.LEAD), PanelMemberSpec("lead")],
            "members",
            "listed once",
        ),
        (
            [PanelMemberSpec("lead", PanelRole.LEAD), PanelMemberSpec("guest")],
            "members.role",
            "invite as guest",
        ),
        (
            [PanelMemberSpec("lead", PanelRole.LEAD), PanelMemberSpec("nobody")],
            "members.user",
            "not an active account",
        ),
        (
            [PanelMemberSpec("lead", PanelRole.LEAD), PanelMemberSpec("coord")],
            "members.user",
            "not a panel member",
        ),
    ],
)
def test_bad_panels_are_refused_and_leave_nothing(
    world: World, members: list, field: str, fragment: str
) -> None:
    with pytest.raises(ValidationError) as err:
        world.assemble(members)
    assert err.value.field == field
    assert any(fragment in r for r in err.value.reasons)
    assert world.status() is CaseStatus.SUBMITTED
    with pytest.raises(NotFoundError):
        world.state.review.panel(
            world.case_id, with_reasons=True, **world.as_("coord", Action.PANEL_VIEW)
        )


def test_a_deadline_in_the_past_is_refused(world: World) -> None:
    with pytest.raises(ValidationError) as err:
        world.assemble(deadline=date.today() - timedelta(days=1))
    assert err.value.field == "deadline"
    assert world.status() is CaseStatus.SUBMITTED


def test_guests_from_other_networks_and_coordinators_of_other_networks(world: World) -> None:
    panel = world.assemble(
        [PanelMemberSpec("lead", PanelRole.LEAD), PanelMemberSpec("guest", PanelRole.GUEST)]
    )
    assert panel.member("guest").network == "ERN-B"
    world.accept("guest")
    world.state.cases.read_case(world.case_id, **world.as_("guest", Action.CASE_READ))
    with pytest.raises(PermissionDeniedError) as err:
        world.state.review.assemble(
            world.case_id,
            [PanelMemberSpec("lead", PanelRole.LEAD)],
            urgency=Urgency.ROUTINE,
            deadline=date.today() + timedelta(days=3),
            **world.as_("coord-other", Action.PANEL_ASSEMBLE),
        )
    assert "another network" in err.value.reasons[0]


def test_reassembling_drops_left_out_members_from_the_case(world: World) -> None:
    world.assemble()
    world.assemble([PanelMemberSpec("lead", PanelRole.LEAD)])
    with pytest.raises(PermissionDeniedError):
        world.state.cases.read_case(world.case_id, **world.as_("expert", Action.CASE_READ))


# -- invitations --------------------------------------------------------------------


def test_declining_needs_a_reason_and_gives_up_access(world: World) -> None:
    world.assemble()
    review = world.state.review
    with pytest.raises(ValidationError) as err:
        review.respond(
            world.case_id, accept=False, reason=" ", **world.as_("expert", Action.REVIEW_WRITE)
        )
    assert err.value.field == "reason"
    inv = review.respond(
        world.case_id,
        accept=False,
        reason="conflict of interest",
        **world.as_("expert", Action.REVIEW_WRITE),
    )
    assert inv.status is InvitationStatus.DECLINED
    with pytest.raises(PermissionDeniedError):
        world.state.cases.read_case(world.case_id, **world.as_("expert", Action.CASE_READ))
    panel = review.panel(world.case_id, with_reasons=True, **world.as_("coord", Action.PANEL_VIEW))
    assert panel.member("expert").reason == "conflict of interest"
    world.accept("lead")
    with pytest.raises(ConflictError) as err:
        world.accept("lead")
    assert "already accepted" in err.value.reasons[0]


def test_an_expired_invitation_cannot_be_accepted(world: World) -> None:
    world.assemble()
    with session_scope(world.state.sessions) as s:
        m = s.get(PanelMemberRow, (world.case_id, "expert"))
        m.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(ConflictError) as err:
        world.accept("expert")
    assert "expired" in err.value.reasons[0]
    assert world.state.review.invitations("expert")[0].status is InvitationStatus.EXPIRED
    with pytest.raises(PermissionDeniedError):
        world.state.cases.read_case(world.case_id, **world.as_("expert", Action.CASE_READ))


def test_the_sweep_expires_unanswered_invitations_and_access(world: World) -> None:
    world.assemble()
    world.accept("lead")
    later = datetime.now(UTC) + timedelta(days=8)
    assert world.state.review.expire_invitations(now=later) == 1  # expert's, not lead's
    assert world.state.review.expire_invitations(now=later) == 0
    with pytest.raises(PermissionDeniedError):
        world.state.cases.read_case(world.case_id, **world.as_("expert", Action.CASE_READ))
    world.state.cases.read_case(world.case_id, **world.as_("lead", Action.CASE_READ))


# -- contributions and discussion ---------------------------------------------------


def test_contributions_are_encrypted_editable_and_start_the_discussion(world: World) -> None:
    discussing(world)
    review = world.state.review
    review.put_contribution(
        world.case_id, "First opinion", **world.as_("lead", Action.REVIEW_WRITE)
    )
    assert world.status() is CaseStatus.IN_DISCUSSION
    review.put_contribution(
        world.case_id, "Revised opinion", **world.as_("lead", Action.REVIEW_WRITE)
    )
    review.put_contribution(
        world.case_id, "Second opinion", **world.as_("expert", Action.REVIEW_WRITE)
    )
    got = review.contributions(world.case_id, **world.as_("coord", Action.REVIEW_READ))
    assert sorted((c.author, c.body) for c in got) == [
        ("expert", "Second opinion"),
        ("lead", "Revised opinion"),
    ]
    with session_scope(world.state.sessions, write=False) as s:
        blobs = list(s.scalars(select(ContributionRow.body_enc)))
    assert len(blobs) == 2 and not any(b"opinion" in b for b in blobs)
    assert "contribution.write" in audit_actions(world.state, world.case_id)
    assert "contribution.read" in audit_actions(world.state, world.case_id)


def test_empty_contributions_and_non_members_are_refused(world: World) -> None:
    discussing(world)
    review = world.state.review
    with pytest.raises(ValidationError) as err:
        review.put_contribution(world.case_id, "   ", **world.as_("lead", Action.REVIEW_WRITE))
    assert err.value.field == "body"
    with pytest.raises(PermissionDeniedError) as err:
        review.post_message(world.case_id, "hello", **world.as_("outsider", Action.REVIEW_WRITE))
    assert "not on the case's panel" in err.value.reasons[0]
    with pytest.raises(PermissionDeniedError):
        review.post_message(world.case_id, "hello", **world.as_("coord", Action.REVIEW_WRITE))
    with session_scope(world.state.sessions, write=False) as s:
        assert s.scalar(select(func.count()).select_from(MessageRow)) == 0
        assert s.scalar(select(func.count()).select_from(ContributionRow)) == 0


def test_an_invited_member_must_accept_before_writing(world: World) -> None:
    world.assemble()
    with pytest.raises(PermissionDeniedError) as err:
        world.state.review.put_contribution(
            world.case_id, "opinion", **world.as_("expert", Action.REVIEW_WRITE)
        )
    assert "accepted" in err.value.reasons[0]


def test_threaded_messages_with_mentions_notify(world: World) -> None:
    discussing(world)
    review = world.state.review
    first = review.post_message(
        world.case_id,
        "What about FBN1?",
        mentions=["expert"],
        **world.as_("lead", Action.REVIEW_WRITE),
    )
    reply = review.post_message(
        world.case_id,
        "Sequenced, negative",
        parent_id=first.id,
        **world.as_("expert", Action.REVIEW_WRITE),
    )
    assert reply.parent_id == first.id
    msgs = review.messages(world.case_id, **world.as_("lead", Action.REVIEW_READ))
    assert [m.body for m in msgs] == ["What about FBN1?", "Sequenced, negative"]
    assert msgs[0].mentions == ("expert",)
    assert NotificationKind.MENTION in [n.kind for n in review.notifications("expert")]
    with pytest.raises(ValidationError) as err:
        review.post_message(
            world.case_id, "x", mentions=["outsider"], **world.as_("lead", Action.REVIEW_WRITE)
        )
    assert err.value.field == "mentions"
    with pytest.raises(ValidationError) as err:
        review.post_message(
            world.case_id, "x", parent_id="nope", **world.as_("lead", Action.REVIEW_WRITE)
        )
    assert err.value.field == "parent_id"


# -- information requests and meetings ------------------------------------------------


def test_the_owner_answers_a_request_for_information(world: World) -> None:
    discussing(world)
    review = world.state.review
    req = review.request_information(
        world.case_id, "Is there a family history?", **world.as_("expert", Action.REVIEW_WRITE)
    )
    assert NotificationKind.INFORMATION_REQUEST in [n.kind for n in review.notifications("owner")]
    with pytest.raises(PermissionDeniedError):
        review.answer_information(
            world.case_id, req.id, "no", **world.as_("expert", Action.INFO_ANSWER)
        )
    answered = review.answer_information(
        world.case_id,
        req.id,
        "Father had aortic dissection",
        **world.as_("owner", Action.INFO_ANSWER),
    )
    assert answered.answered_by == "owner"
    with pytest.raises(ConflictError):
        review.answer_information(
            world.case_id, req.id, "again", **world.as_("owner", Action.INFO_ANSWER)
        )
    seen = review.information_requests(world.case_id, **world.as_("owner", Action.INFO_READ))
    assert seen[0].answer == "Father had aortic dissection"


def test_meetings_show_each_participants_time_zone(world: World) -> None:
    world.assemble(
        [PanelMemberSpec("lead", PanelRole.LEAD), PanelMemberSpec("guest", PanelRole.GUEST)]
    )
    world.accept("lead")
    world.accept("guest")
    review = world.state.review
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    meeting = review.schedule_meeting(
        world.case_id,
        title="Panel meeting",
        starts_at=starts,
        duration_minutes=45,
        **world.as_("lead", Action.REVIEW_WRITE),
    )
    assert dict(meeting.participants) == {"lead": "Europe/Paris", "guest": "America/New_York"}
    with pytest.raises(ValidationError) as err:
        review.schedule_meeting(
            world.case_id,
            title="late",
            starts_at=datetime.now(UTC) - timedelta(hours=1),
            duration_minutes=30,
            **world.as_("lead", Action.REVIEW_WRITE),
        )
    assert err.value.field == "starts_at"
    recorded = review.record_meeting(
        world.case_id,
        meeting.id,
        attended=["lead", "guest"],
        minutes="Agreed on Marfan.",
        **world.as_("lead", Action.REVIEW_WRITE),
    )
    assert recorded.attended == ("lead", "guest") and recorded.minutes == "Agreed on Marfan."


# -- the outcome ----------------------------------------------------------------------


def drafted(world: World):  # noqa: ANN201
    discussing(world)
    review = world.state.review
    review.put_contribution(world.case_id, "opinion", **world.as_("lead", Action.REVIEW_WRITE))
    return review.draft_outcome(world.case_id, DRAFT, **world.as_("lead", Action.REVIEW_WRITE))


def test_only_the_lead_drafts_and_contributions_freeze(world: World) -> None:
    discussing(world)
    review = world.state.review
    review.put_contribution(world.case_id, "opinion", **world.as_("expert", Action.REVIEW_WRITE))
    with pytest.raises(PermissionDeniedError) as err:
        review.draft_outcome(world.case_id, DRAFT, **world.as_("expert", Action.REVIEW_WRITE))
    assert "lead" in err.value.reasons[0]
    outcome, pending = review.draft_outcome(
        world.case_id, DRAFT, **world.as_("lead", Action.REVIEW_WRITE)
    )
    assert outcome.version == 1 and sorted(pending) == ["expert", "lead"]
    assert world.status() is CaseStatus.OUTCOME_DRAFTED
    with pytest.raises(ConflictError) as err:
        review.put_contribution(world.case_id, "late", **world.as_("expert", Action.REVIEW_WRITE))
    assert "frozen" in err.value.reasons[0]


def test_both_sign_then_the_outcome_is_sealed_and_verifies(world: World) -> None:
    drafted(world)
    review = world.state.review
    out, pending = review.endorse(
        world.case_id,
        decision=EndorsementDecision.ENDORSE,
        reason="",
        **world.as_("lead", Action.REVIEW_WRITE),
    )
    assert pending == ["expert"] and not out.signed
    with pytest.raises(ConflictError) as err:
        review.endorse(
            world.case_id,
            decision=EndorsementDecision.ENDORSE,
            reason="",
            **world.as_("lead", Action.REVIEW_WRITE),
        )
    assert "already signed" in err.value.reasons[0]
    with pytest.raises(ValidationError):
        review.endorse(
            world.case_id,
            decision=EndorsementDecision.DISSENT,
            reason="",
            **world.as_("expert", Action.REVIEW_WRITE),
        )
    out, pending = review.endorse(
        world.case_id,
        decision=EndorsementDecision.DISSENT,
        reason="I would add an MRI",
        **world.as_("expert", Action.REVIEW_WRITE),
    )
    assert pending == [] and out.signed
    assert world.status() is CaseStatus.OUTCOME_SIGNED
    assert NotificationKind.OUTCOME_SIGNED in [n.kind for n in review.notifications("owner")]
    # each signature checks out by itself, from the data the owner receives
    for e in out.endorsements:
        statement = signed_statement(
            out.document(), signer=e.signer, decision=e.decision, reason=e.reason
        )
        assert signing.verify(e.public_key, e.signature, statement)
    assert review.verify_outcome(world.case_id, ctx=world.ctx("admin")) == []
    # the owner reads it
    owner_view, _ = review.outcome(world.case_id, **world.as_("owner", Action.OUTCOME_READ))
    assert owner_view.draft == DRAFT


def test_signing_a_changed_outcome_is_refused(world: World) -> None:
    drafted(world)
    review = world.state.review
    review.draft_outcome(world.case_id, DRAFT, **world.as_("lead", Action.REVIEW_WRITE))  # v2
    with pytest.raises(ConflictError) as err:
        review.endorse(
            world.case_id,
            decision=EndorsementDecision.ENDORSE,
            reason="",
            version=1,
            **world.as_("expert", Action.REVIEW_WRITE),
        )
    assert "changed" in err.value.reasons[0]


def _seal(world: World) -> None:
    drafted(world)
    for name in ("lead", "expert"):
        world.state.review.endorse(
            world.case_id,
            decision=EndorsementDecision.ENDORSE,
            reason="",
            **world.as_(name, Action.REVIEW_WRITE),
        )


def test_verify_fails_when_a_byte_of_the_stored_ciphertext_changes(world: World) -> None:
    _seal(world)
    with session_scope(world.state.sessions) as s:
        o = s.get(OutcomeRow, world.case_id)
        blob = bytearray(o.document_enc)
        blob[-5] ^= 0x01
        o.document_enc = bytes(blob)
    problems = world.state.review.verify_outcome(world.case_id, ctx=world.ctx("admin"))
    assert problems and "fails authentication" in problems[0]


def test_verify_fails_when_the_outcome_is_rewritten_with_the_key(world: World) -> None:
    """Someone holding the keys changes one byte of the outcome: the signatures break."""
    _seal(world)
    state = world.state
    with session_scope(state.sessions) as s:
        o = s.get(OutcomeRow, world.case_id)
        cipher = FieldCipher(state.keys.get(s, case_key_id(world.case_id)))
        doc = cipher.decrypt(
            o.document_enc, table="outcomes", row_id=world.case_id, field="document"
        )
        changed = doc.replace(b"ORPHA:558", b"ORPHA:559")
        assert changed != doc and json.loads(changed)
        o.document_enc = cipher.encrypt(
            changed, table="outcomes", row_id=world.case_id, field="document"
        )
    problems = state.review.verify_outcome(world.case_id, ctx=world.ctx("admin"))
    assert sorted(problems) == [
        "signature of expert: does not verify over the stored outcome",
        "signature of lead: does not verify over the stored outcome",
    ]


def test_signing_keys_are_per_member_and_private_halves_encrypted(world: World) -> None:
    _seal(world)
    with session_scope(world.state.sessions, write=False) as s:
        keys = [(k.user, k.public_key, k.private_enc) for k in s.scalars(select(SigningKeyRow))]
    assert sorted(user for user, _, _ in keys) == ["expert", "lead"]
    assert all(len(public) == 32 and len(private) > 32 for _, public, private in keys)


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert (
        canonical_json({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'.encode()
    )


def test_the_outcome_draft_is_validated() -> None:
    with pytest.raises(ValidationError) as err:
        OutcomeDraft("558", "x", (), "plan", date(2027, 1, 1))
    assert err.value.field == "diagnosis_code"
    with pytest.raises(ValidationError) as err:
        OutcomeDraft("ORPHA:558", "x", (), "  ", date(2027, 1, 1))
    assert err.value.field == "treatment_plan"


# -- close, reopen, notifications, mail, reports ------------------------------------


def test_close_and_reopen(world: World) -> None:
    _seal(world)
    review = world.state.review
    with pytest.raises(PermissionDeniedError):
        review.panel_action(world.case_id, "close", **world.as_("lead", Action.PANEL_MANAGE))
    review.panel_action(world.case_id, "close", **world.as_("coord", Action.PANEL_MANAGE))
    assert world.status() is CaseStatus.CLOSED
    with pytest.raises(ConflictError) as err:
        review.panel_action(world.case_id, "close", **world.as_("coord", Action.PANEL_MANAGE))
    assert "closed" in err.value.reasons[0]
    review.panel_action(world.case_id, "reopen", **world.as_("coord", Action.PANEL_MANAGE))
    assert world.status() is CaseStatus.REOPENED


def test_mail_is_queued_with_the_change_and_carries_no_patient_data(backend: State) -> None:
    backend.review.mail_enabled = True
    world = make_world(backend)
    world.assemble()
    mail = backend.review.pending_mail()
    assert sorted(m.to_addr for m in mail) == ["expert@example.org", "lead@example.org"]
    for m in mail:
        assert "Review case" not in m.body and "summary" not in m.body
        assert world.case_id in m.body  # the link, a random id
    backend.review.mail_done(mail[0].id)
    backend.review.mail_done(mail[1].id, error="connection refused")
    assert backend.review.pending_mail() == []  # one sent, one waiting to retry
    with session_scope(backend.sessions, write=False) as s:
        assert s.scalar(select(func.count()).select_from(MailOutboxRow)) == 2


def test_deadline_reminders_go_out_once(world: World) -> None:
    world.assemble(deadline=date.today() + timedelta(days=1))
    assert world.state.review.remind_deadlines() == 1
    assert world.state.review.remind_deadlines() == 0
    kinds = [n.kind for n in world.state.review.notifications("lead")]
    assert NotificationKind.DEADLINE in kinds


def test_notifications_are_private_and_marked_read(world: World) -> None:
    world.assemble()
    review = world.state.review
    n = review.notifications("lead")[0]
    with pytest.raises(NotFoundError):
        review.mark_read("expert", n.id)
    assert review.mark_read("lead", n.id).read_at is not None
    assert review.notifications("lead", unread=True) == []


def test_monitor_and_activity_reports(world: World) -> None:
    discussing(world)
    review = world.state.review
    review.put_contribution(world.case_id, "opinion", **world.as_("lead", Action.REVIEW_WRITE))
    monitor = review.monitor("ERN-A", ctx=world.ctx("coord"))
    assert [p.case_id for p in monitor["open"]] == [world.case_id]
    assert [p.case_id for p in monitor["few_contributions"]] == [world.case_id]
    assert monitor["overdue"] == []
    assert review.monitor("ERN-B", ctx=world.ctx("coord-other"))["open"] == []
    activity = review.activity(network="ERN-A", ctx=world.ctx("coord"))
    assert activity["by_network"] == [{"network": "ERN-A", "submitted": 1, "open": 1, "closed": 0}]
    assert activity["contributions_per_panel"][0]["contributions"] == 1


def test_erasing_a_case_removes_its_review_content(world: World) -> None:
    _seal(world)
    world.state.cases.erase_case(world.case_id, ctx=world.ctx("admin"))
    with session_scope(world.state.sessions, write=False) as s:
        for table in (ContributionRow, MessageRow, OutcomeRow, PanelMemberRow):
            assert s.scalar(select(func.count()).select_from(table)) == 0, table.__tablename__


def test_no_review_text_reaches_the_database_files_in_clear(world: World) -> None:
    """Opinions, messages, questions, answers, minutes and the outcome: ciphertext only."""
    if world.state.engine.dialect.name != "sqlite":
        pytest.skip("the raw-file scan of PostgreSQL is in test_plaintext_scan")
    marker = "ZEBRA-7Q"
    review = world.state.review
    discussing(world)
    review.put_contribution(
        world.case_id, f"{marker} opinion", **world.as_("lead", Action.REVIEW_WRITE)
    )
    review.post_message(
        world.case_id, f"{marker} message", **world.as_("lead", Action.REVIEW_WRITE)
    )
    req = review.request_information(
        world.case_id, f"{marker} q", **world.as_("lead", Action.REVIEW_WRITE)
    )
    review.answer_information(
        world.case_id, req.id, f"{marker} a", **world.as_("owner", Action.INFO_ANSWER)
    )
    m = review.schedule_meeting(
        world.case_id,
        title=f"{marker} meeting",
        starts_at=datetime.now(UTC) + timedelta(days=1),
        duration_minutes=30,
        **world.as_("lead", Action.REVIEW_WRITE),
    )
    review.record_meeting(
        world.case_id,
        m.id,
        attended=["lead"],
        minutes=f"{marker} minutes",
        **world.as_("lead", Action.REVIEW_WRITE),
    )
    draft = OutcomeDraft(
        "ORPHA:558", f"{marker} label", (f"{marker} test",), f"{marker} plan", date(2027, 1, 1)
    )
    review.draft_outcome(world.case_id, draft, **world.as_("lead", Action.REVIEW_WRITE))
    review.endorse(
        world.case_id,
        decision=EndorsementDecision.DISSENT,
        reason=f"{marker} why",
        **world.as_("expert", Action.REVIEW_WRITE),
    )
    db_file = world.state.engine.url.database
    raw = b"".join(Path(p).read_bytes() for p in (db_file, f"{db_file}-wal") if Path(p).exists())
    assert b"expert@example.org" in raw  # the scan sees clear columns
    assert marker.encode() not in raw


def test_two_last_signatures_at_once_still_seal_the_outcome(world: World) -> None:
    drafted(world)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def sign(name: str) -> None:
        barrier.wait()
        try:
            world.state.review.endorse(
                world.case_id,
                decision=EndorsementDecision.ENDORSE,
                reason="",
                **world.as_(name, Action.REVIEW_WRITE),
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sign, args=(n,)) for n in ("lead", "expert")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert world.status() is CaseStatus.OUTCOME_SIGNED
    assert world.state.review.verify_outcome(world.case_id, ctx=world.ctx("admin")) == []
