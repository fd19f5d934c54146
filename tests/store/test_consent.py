"""Consent and clinical content in the store, on SQLite and PostgreSQL.

Consent is data: recorded with its signed form, checked on every read (the
case's reference carries the active scopes to the policy), withdrawn scope
by scope. Clinical content is encrypted like every other field.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cpms_hub.domain import (
    AccountStatus,
    CaseDraft,
    CaseStatus,
    ConflictError,
    ConsentScope,
    MemberRole,
    PermissionDeniedError,
    Role,
    ValidationError,
)
from cpms_hub.domain.codec import content_from_json
from cpms_hub.policy import Action, Actor, Decision, decide
from cpms_hub.policy.decide import ACTION_SCOPES
from cpms_hub.state import State
from cpms_hub.store import AuditContext

CTX = AuditContext(actor="owner", client="127.0.0.1")
PDF = b"%PDF-1.4\n%%EOF\n"
PANEL = Actor(
    "expert",
    frozenset({Role.PANEL_MEMBER}),
    "H2",
    "N",
    AccountStatus.ACTIVE,
    frozenset(ACTION_SCOPES.values()),
)


def allow(_ref: object) -> Decision:
    return Decision(True, ("test",))


def as_panel(action: Action):  # noqa: ANN201
    return lambda ref: decide(PANEL, action, ref)


def make_case(state: State) -> str:
    case = state.cases.create_case(
        CaseDraft("Consent case", "summary"), owner="owner", hospital="H", network="N", ctx=CTX
    )
    state.cases.add_member(case.id, "expert", MemberRole.PANEL_MEMBER, ctx=CTX)
    return case.id


def attach(
    state: State, case_id: str, data: bytes = PDF, media_type: str = "application/pdf"
) -> str:
    f = state.cases.add_file(
        case_id,
        iter([data]),
        name="form",
        media_type=media_type,
        max_size=1 << 20,
        authorize=allow,
        ctx=CTX,
    )
    return f.id


def consent(state: State, case_id: str, form_id: str | None, scopes=None):  # noqa: ANN001, ANN201
    return state.cases.record_consent(
        case_id,
        scopes=frozenset(scopes or {ConsentScope.PANEL_DISCUSSION, ConsentScope.REGISTRIES}),
        form_version="v2",
        language="fr",
        signed_on=date(2026, 3, 1),
        form_file_id=form_id,
        authorize=allow,
        ctx=CTX,
    )


def test_panel_reads_only_with_consent_and_withdrawal_freezes(backend: State) -> None:
    case_id = make_case(backend)
    backend.cases.set_status(case_id, CaseStatus.SUBMITTED, ctx=CTX)
    with pytest.raises(PermissionDeniedError) as no_consent:
        backend.cases.read_case(case_id, authorize=as_panel(Action.CASE_READ), ctx=CTX)
    assert "no consent" in no_consent.value.reasons[0]

    c = consent(backend, case_id, attach(backend, case_id))
    assert backend.cases.read_case(case_id, authorize=as_panel(Action.CASE_READ), ctx=CTX)

    backend.cases.withdraw_consent(
        case_id,
        c.id,
        scope=ConsentScope.PANEL_DISCUSSION,
        reason="patient asked",
        on=date.today(),
        authorize=allow,
        ctx=CTX,
    )
    with pytest.raises(PermissionDeniedError) as frozen:
        backend.cases.read_case(case_id, authorize=as_panel(Action.CASE_READ), ctx=CTX)
    assert "frozen" in frozen.value.reasons[0]
    with pytest.raises(PermissionDeniedError):
        backend.cases.list_files(case_id, authorize=as_panel(Action.FILE_READ), ctx=CTX)
    # the owner still reads the case and sees why
    mine = backend.cases.read_case(case_id, authorize=allow, ctx=CTX)
    assert ConsentScope.PANEL_DISCUSSION in mine.consent_withdrawn
    assert ConsentScope.REGISTRIES in mine.consent
    entries = backend.audit.entries(backend.sessions(), case_id=case_id)
    assert any(e.action == "consent.withdraw" for e in entries)


def test_withdrawal_rules(backend: State) -> None:
    case_id = make_case(backend)
    c = consent(backend, case_id, attach(backend, case_id), scopes={ConsentScope.PANEL_DISCUSSION})
    kw = {"reason": "r", "on": date.today(), "authorize": allow, "ctx": CTX}
    with pytest.raises(ValidationError, match="scope"):
        backend.cases.withdraw_consent(case_id, c.id, scope=ConsentScope.REGISTRIES, **kw)
    with pytest.raises(ValidationError, match="future"):
        backend.cases.withdraw_consent(
            case_id,
            c.id,
            scope=ConsentScope.PANEL_DISCUSSION,
            **{**kw, "on": date.today() + timedelta(days=2)},
        )
    backend.cases.withdraw_consent(case_id, c.id, scope=ConsentScope.PANEL_DISCUSSION, **kw)
    with pytest.raises(ConflictError):
        backend.cases.withdraw_consent(case_id, c.id, scope=ConsentScope.PANEL_DISCUSSION, **kw)


@pytest.mark.parametrize(
    ("data", "media_type", "why"),
    [
        (b"hello, not a form", "text/plain", "must be one of"),
        (b"GIF89a....", "application/pdf", "does not match its type application/pdf"),
    ],
)
def test_consent_form_must_be_a_pdf_or_image(backend: State, data, media_type, why) -> None:
    case_id = make_case(backend)
    form = attach(backend, case_id, data, media_type)
    with pytest.raises(ValidationError, match=why):
        consent(backend, case_id, form)
    assert backend.cases.list_consents(case_id, authorize=allow, ctx=CTX) == []


def test_consent_dates_and_scopes_are_checked(backend: State) -> None:
    case_id = make_case(backend)
    with pytest.raises(ValidationError, match="signed_on"):
        backend.cases.record_consent(
            case_id,
            scopes=frozenset({ConsentScope.PANEL_DISCUSSION}),
            form_version="v1",
            language="en",
            signed_on=date.today() + timedelta(days=1),
            form_file_id=None,
            authorize=allow,
            ctx=CTX,
        )
    with pytest.raises(ValidationError, match="scope"):
        backend.cases.record_consent(
            case_id,
            scopes=frozenset(),
            form_version="v1",
            language="en",
            signed_on=date.today(),
            form_file_id=None,
            authorize=allow,
            ctx=CTX,
        )
    assert backend.cases.list_consents(case_id, authorize=allow, ctx=CTX) == []


def test_content_round_trip_and_pseudonym_index(backend: State) -> None:
    case_id = make_case(backend)
    content = content_from_json(
        {
            "patient": {"pseudonym": "P-77", "sex": "female", "birth_year": 2015, "country": "BE"},
            "phenotypes": [{"hpo_id": "HP:0001250", "label": "Seizure", "onset": "HP:0003593"}],
            "diagnoses": [{"system": "ICD-10", "code": "G40.9", "label": "Epilepsy"}],
            "genetics": [{"gene": "SCN1A", "hgvs": "NM_001165963.4:c.2589+3A>T"}],
            "question": "Dravet?",
        }
    )
    case = backend.cases.set_content(case_id, content, authorize=allow, ctx=CTX)
    assert case.content == content
    again = backend.cases.read_case(case_id, authorize=allow, ctx=CTX)
    assert again.content == content
    found = backend.cases.lookup_pseudonym("P-77", authorize=allow, ctx=CTX)
    assert [c.id for c in found] == [case_id]


def test_submit_lists_every_problem_and_changes_nothing(backend: State) -> None:
    case_id = make_case(backend)

    def problems(case, consents, files):  # noqa: ANN001, ANN202
        return ["patient: missing", "consent: no consent recorded"]

    with pytest.raises(ValidationError) as err:
        backend.cases.submit(case_id, problems=problems, authorize=allow, ctx=CTX)
    assert err.value.reasons == ("patient: missing", "consent: no consent recorded")
    assert backend.cases.case_ref(case_id).status is CaseStatus.DRAFT

    submitted = backend.cases.submit(case_id, problems=lambda *a: [], authorize=allow, ctx=CTX)
    assert submitted.status is CaseStatus.SUBMITTED
    with pytest.raises(ConflictError):
        backend.cases.submit(case_id, problems=lambda *a: [], authorize=allow, ctx=CTX)


def test_withdrawn_registry_scope_drops_the_case_from_exports(backend: State) -> None:
    kept, dropped, never = make_case(backend), make_case(backend), make_case(backend)
    consent(backend, kept, attach(backend, kept))
    c = consent(backend, dropped, attach(backend, dropped))
    consent(backend, never, attach(backend, never), scopes={ConsentScope.PANEL_DISCUSSION})
    registries = ConsentScope.REGISTRIES
    assert backend.cases.consented_case_ids(registries) == [kept, dropped]
    backend.cases.withdraw_consent(
        dropped,
        c.id,
        scope=registries,
        reason="no registries",
        on=date.today(),
        authorize=allow,
        ctx=CTX,
    )
    assert backend.cases.consented_case_ids(registries) == [kept]
    assert backend.cases.consented_case_ids(registries, network="elsewhere") == []
    # panel discussion is untouched by the registry withdrawal
    assert dropped in backend.cases.consented_case_ids(ConsentScope.PANEL_DISCUSSION)
