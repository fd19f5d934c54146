"""The store's side of analysis, on SQLite and PostgreSQL: consent decided in SQL.

Only submitted cases whose patient's latest consent grants ``registries`` are
read; withdrawing that scope drops the case from the very next read, and a
newer consent record replaces the older one. Decrypted facts are cached by
``updated_at``: a change of content, or a follow-up recorded, is seen at once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from cpms_hub.domain import CaseDraft, CaseStatus, ConflictError, ConsentScope
from cpms_hub.domain.codec import content_from_json
from cpms_hub.domain.followup import FollowUpDraft, FollowUpResult, TreatmentCategory
from cpms_hub.policy import Decision
from cpms_hub.state import State
from cpms_hub.store import AuditContext, session_scope
from cpms_hub.store.analysis import AnalysisReader
from cpms_hub.store.review_schema import FollowUpRow, OutcomeRow

CTX = AuditContext(actor="owner", client="127.0.0.1")
R, P = ConsentScope.REGISTRIES, ConsentScope.PANEL_DISCUSSION


def allow(_ref: object) -> Decision:
    return Decision(True, ("test",))


def content(pseudonym: str, terms: list[str]):  # noqa: ANN201
    return content_from_json(
        {
            "patient": {
                "pseudonym": pseudonym,
                "sex": "female",
                "birth_year": 2001,
                "country": "FR",
            },
            "phenotypes": [{"hpo_id": t} for t in terms]
            + [{"hpo_id": "HP:0001263", "excluded": True}],
            "diagnoses": [{"system": "ORPHA", "code": "ORPHA:558", "confirmed": True}],
            "genetics": [{"gene": "FBN1", "hgvs": "NM_000138.5:c.1A>G"}],
        }
    )


def case(state: State, name: str, *, scopes, status=CaseStatus.SUBMITTED, network="N") -> str:  # noqa: ANN001
    c = state.cases.create_case(
        CaseDraft(f"case {name}", "s", network=network),
        owner="owner",
        hospital="H",
        network="N",
        ctx=CTX,
        content=content(f"PSEUDO-{name}", ["HP:0001250", "HP:0001166"]),
    )
    if scopes:
        state.cases.record_consent(
            c.id,
            scopes=frozenset(scopes),
            form_version="v1",
            language="en",
            signed_on=date(2026, 1, 1),
            form_file_id=None,
            authorize=allow,
            ctx=CTX,
        )
    if status is not CaseStatus.DRAFT:
        state.cases.set_status(c.id, status, ctx=CTX, at=datetime(2026, 2, 1, tzinfo=UTC))
    return c.id


def test_only_submitted_cases_consenting_to_registries_are_read(backend: State) -> None:
    yes = case(backend, "yes", scopes={P, R})
    only_panel = case(backend, "panel", scopes={P})
    none = case(backend, "none", scopes=None)
    draft = case(backend, "draft", scopes={P, R}, status=CaseStatus.DRAFT)
    reader = AnalysisReader(backend.cases)
    facts = reader.consented()
    assert [f.id for f in facts] == [yes]
    assert backend.cases.consented_case_ids(R) == [yes, draft]
    assert {only_panel, none}.isdisjoint(backend.cases.consented_case_ids(R))
    f = facts[0]
    # decrypted for the analyses: observed phenotypes only, no pseudonym unless asked
    assert f.phenotypes == ("HP:0001250", "HP:0001166")
    assert f.orpha == ("ORPHA:558",) and f.confirmed == ("ORPHA:558",)
    assert f.pseudonym is None and f.country == "FR" and f.birth_year == 2001
    assert f.submitted_at == datetime(2026, 2, 1, tzinfo=UTC)
    assert reader.consented(pseudonyms=True)[0].pseudonym == "PSEUDO-yes"


def test_withdrawn_registry_consent_drops_the_case_from_the_next_read(backend: State) -> None:
    keep = case(backend, "keep", scopes={P, R})
    leave = case(backend, "leave", scopes={P, R})
    reader = AnalysisReader(backend.cases)
    assert {f.id for f in reader.consented()} == {keep, leave}
    record = backend.cases.list_consents(leave, authorize=allow, ctx=CTX)[0]
    backend.cases.withdraw_consent(
        leave, record.id, scope=R, reason="patient asked", on=date.today(), authorize=allow, ctx=CTX
    )
    assert [f.id for f in reader.consented()] == [keep]
    assert backend.cases.consented_case_ids(R) == [keep]


def test_the_latest_consent_record_decides(backend: State) -> None:
    c = case(backend, "renewed", scopes={P, R})
    reader = AnalysisReader(backend.cases)
    assert [f.id for f in reader.consented()] == [c]
    backend.cases.record_consent(
        c,
        scopes=frozenset({P}),
        form_version="v2",
        language="en",
        signed_on=date(2026, 1, 2),
        form_file_id=None,
        authorize=allow,
        ctx=CTX,
    )
    assert reader.consented() == []


def test_network_filter_and_changed_content_is_seen(backend: State) -> None:
    here = case(backend, "here", scopes={P, R}, network="N")
    case(backend, "there", scopes={P, R}, network="M")
    reader = AnalysisReader(backend.cases)
    assert len(reader.consented()) == 2
    assert [f.id for f in reader.consented(network="N")] == [here]
    backend.cases.set_content(
        here, content("PSEUDO-here", ["HP:0000252"]), authorize=allow, ctx=CTX
    )
    changed = [f for f in reader.consented() if f.id == here][0]
    assert changed.phenotypes == ("HP:0000252",)


def test_milestones_are_kept_once(backend: State) -> None:
    c = case(backend, "m", scopes={P, R})
    first = datetime(2026, 3, 1, tzinfo=UTC)
    backend.cases.set_status(c, CaseStatus.OUTCOME_SIGNED, ctx=CTX, at=first)
    backend.cases.set_status(c, CaseStatus.CLOSED, ctx=CTX, at=datetime(2026, 4, 1, tzinfo=UTC))
    f = AnalysisReader(backend.cases).consented()[0]
    assert f.outcome_at == first and f.submitted_at == datetime(2026, 2, 1, tzinfo=UTC)


def test_exports_are_audited_with_their_fingerprint(backend: State) -> None:
    c = case(backend, "a", scopes={P, R})
    reader = AnalysisReader(backend.cases)
    reader.record(CTX, "registry.export", {"rows": 1, "sha256": "ab" * 32}, case_ids=[c])
    with session_scope(backend.sessions, write=False) as s:
        entries = [e for e in backend.audit.entries(s, limit=100) if e.action == "registry.export"]
    assert {e.case_id for e in entries} == {c, None}
    summary = [e for e in entries if e.case_id is None][0]
    assert '"sha256":"' + "ab" * 32 in summary.detail and '"rows":1' in summary.detail
    assert backend.verify_audit().ok


def _sign_outcome(state: State, case_id: str) -> None:
    """A signed outcome row, as the panel review leaves it (its content is not read here)."""
    now = datetime(2026, 3, 1, tzinfo=UTC)
    with session_scope(state.sessions) as s:
        s.add(
            OutcomeRow(
                case_id=case_id,
                version=1,
                document_enc=b"not read by the analyses",
                drafted_by="lead",
                drafted_at=now,
                signed_at=now,
            )
        )
    state.cases.set_status(case_id, CaseStatus.OUTCOME_SIGNED, ctx=CTX, at=now)


def test_follow_ups_reach_the_facts_coded_and_fresh(backend: State) -> None:
    c = case(backend, "f", scopes={P, R})
    with pytest.raises(ConflictError):  # nothing to follow up before the outcome is signed
        backend.followups.record(
            c, FollowUpDraft("medicinal", "improved"), authorize=allow, ctx=CTX
        )
    _sign_outcome(backend, c)
    reader = AnalysisReader(backend.cases)
    before = reader.consented()[0]
    assert before.outcome_at is not None and (before.treatment, before.followup) == (None, None)

    backend.followups.record(c, FollowUpDraft("medicinal", "improved"), authorize=allow, ctx=CTX)
    after = reader.consented()[0]  # the same reader: its cache must not hide the record
    assert (after.treatment, after.followup) == ("medicinal", "improved")
    backend.followups.record(c, FollowUpDraft("surgical", "stable"), authorize=allow, ctx=CTX)
    again = reader.consented()[0]
    assert (again.treatment, again.followup) == ("surgical", "stable")
    got = backend.followups.get(c, authorize=allow, ctx=CTX)
    assert got.draft == FollowUpDraft(TreatmentCategory.SURGICAL, FollowUpResult.STABLE)

    # encrypted at rest, bound to its row: the codes are not in the database in clear
    with session_scope(backend.sessions, write=False) as s:
        blob = s.get(FollowUpRow, c).record_enc
    assert b"surgical" not in blob and b"stable" not in blob

    with session_scope(backend.sessions, write=False) as s:
        actions = [e.action for e in backend.audit.entries(s, case_id=c, limit=100)]
    assert actions.count("followup.record") == 2 and "followup.read" in actions
