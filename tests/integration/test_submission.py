"""Submitting a case through the client only: every refusal says why, nothing partial is kept.

Against the session's real deployment (hub, proxy, store service), as the
clinician ``clin-a`` (owner), the panel member ``panel-p`` (once put on the
case's panel) and the auditor ``audit-u``. Every case here is invented.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest

from cpms_hub.domain import (
    CaseContent,
    CaseStatus,
    ConsentScope,
    Diagnosis,
    GeneticFinding,
    MemberRole,
    Patient,
    PermissionDeniedError,
    Phenotype,
    ValidationError,
)
from cpms_hub.store import AuditContext
from cpms_widgets import CaseStoreClient
from tests.samples import tiny_pdf

pytestmark = pytest.mark.deployment

#: obsolete in HPO, replaced by HP:0008665 (Clitoral hypertrophy)
OBSOLETE_HPO = "HP:0000057"
REPLACEMENT_HPO = "HP:0008665"
#: well formed, but no such Orphanet disease
UNKNOWN_ORPHA = "ORPHA:9999999"
MALFORMED_HGVS = "SCN1A c.2589 A to T"


def good_content(pseudonym: str) -> CaseContent:
    return CaseContent(
        patient=Patient(pseudonym, sex="female", birth_year=2021, country="BE"),
        phenotypes=(
            Phenotype("HP:0001250", "Seizure", onset="HP:0003593"),
            Phenotype("HP:0000252", "Microcephaly", excluded=True),
        ),
        diagnoses=(Diagnosis("ORPHA", "ORPHA:33069", "Dravet syndrome"),),
        genetics=(
            GeneticFinding("SCN1A", "NM_001165963.4:c.2589+3A>T", "heterozygous", "pathogenic"),
        ),
        question="Dravet syndrome? Which antiseizure drugs to avoid?",
        urgency="urgent",
    )


def with_(content: CaseContent, **changes) -> CaseContent:
    fields = {f: getattr(content, f) for f in CaseContent.__dataclass_fields__}
    return CaseContent(**{**fields, **changes})


@pytest.fixture(scope="module")
def owner(deployment, tokens):
    with CaseStoreClient(deployment.api, tokens["clin-a"]) as c:
        yield c


@pytest.fixture(scope="module")
def panel(deployment, tokens):
    with CaseStoreClient(deployment.api, tokens["panel-p"]) as c:
        yield c


@pytest.fixture(scope="module")
def auditor(deployment, tokens):
    with CaseStoreClient(deployment.api, tokens["audit-u"]) as c:
        yield c


@pytest.fixture
def draft(owner):
    """A new draft of clin-a with valid content, and that content."""
    pseudonym = f"SUB-{uuid.uuid4().hex[:8].upper()}"
    case = owner.create_case(
        "Invented: infant with drug-resistant seizures",
        "Invented example: febrile then afebrile seizures from 6 months.",
        pseudonym=pseudonym,
    )
    content = good_content(pseudonym)
    owner.set_content(case.id, content)
    return case, content


def _reasons(err: pytest.ExceptionInfo) -> str:
    return "\n".join(err.value.reasons)


# -- codes are checked when content is saved ---------------------------------------------------


def test_an_obsolete_hpo_term_is_refused_naming_its_replacement(owner, draft):
    case, content = draft
    bad = with_(content, phenotypes=(Phenotype(OBSOLETE_HPO, "Clitoromegaly"),))
    with pytest.raises(ValidationError) as err:
        owner.set_content(case.id, bad)
    assert err.value.status == 422
    text = _reasons(err)
    assert OBSOLETE_HPO in text and REPLACEMENT_HPO in text, text
    assert all(r.startswith("phenotypes") for r in err.value.reasons), err.value.reasons
    assert owner.get_case(case.id).content == content


def test_an_unknown_orpha_code_is_refused(owner, draft):
    case, content = draft
    bad = with_(content, diagnoses=(Diagnosis("ORPHA", UNKNOWN_ORPHA, "made up"),))
    with pytest.raises(ValidationError) as err:
        owner.set_content(case.id, bad)
    assert UNKNOWN_ORPHA in _reasons(err), _reasons(err)
    assert err.value.field == "diagnoses", err.value.reasons
    assert owner.get_case(case.id).content == content


def test_a_malformed_hgvs_description_is_refused(owner, draft):
    case, content = draft
    bad = with_(content, genetics=(GeneticFinding("SCN1A", MALFORMED_HGVS),))
    with pytest.raises(ValidationError) as err:
        owner.set_content(case.id, bad)
    assert err.value.field == "genetics.hgvs", err.value.reasons
    assert "HGVS" in _reasons(err)
    assert MALFORMED_HGVS not in _reasons(err)  # what was typed is never echoed
    assert owner.get_case(case.id).content == content


def test_every_bad_code_is_listed_at_once(owner, draft):
    case, content = draft
    bad = with_(
        content,
        phenotypes=(Phenotype(OBSOLETE_HPO),),
        diagnoses=(Diagnosis("ORPHA", UNKNOWN_ORPHA),),
        genetics=(GeneticFinding("SCN1A", MALFORMED_HGVS),),
    )
    with pytest.raises(ValidationError) as err:
        owner.set_content(case.id, bad)
    fields = {r.partition(": ")[0] for r in err.value.reasons}
    assert {"phenotypes", "diagnoses", "genetics.hgvs"} <= fields, err.value.reasons
    assert owner.get_case(case.id).content == content


def test_an_empty_draft_is_refused_with_every_problem(owner):
    case = owner.create_case("Invented: nothing described yet")
    with pytest.raises(ValidationError) as err:
        owner.submit(case.id)
    fields = {r.partition(": ")[0] for r in err.value.reasons}
    assert {"content", "patient", "phenotypes", "question", "consent"} <= fields, fields
    assert owner.get_case(case.id).status is CaseStatus.DRAFT


# -- consent is checked when it is recorded ----------------------------------------------------


def test_bad_consents_are_refused_and_nothing_partial_is_kept(owner, draft, tmp_path: Path):
    case, content = draft
    pdf = tmp_path / "signed.pdf"
    pdf.write_bytes(tiny_pdf())
    form = owner.upload(case.id, pdf, media_type="application/pdf")

    # signed tomorrow
    with pytest.raises(ValidationError) as err:
        owner.record_consent(
            case.id,
            scopes=["panel-discussion"],
            form_version="v1",
            language="en",
            signed_on=date.today() + timedelta(days=1),
            form_file_id=form.id,
        )
    assert err.value.field == "signed_on" and "future" in _reasons(err), err.value.reasons

    # a text file is not a signed form
    txt = tmp_path / "consent.txt"
    txt.write_text("I agree (invented)\n")
    as_text = owner.upload(case.id, txt, media_type="text/plain")
    with pytest.raises(ValidationError) as err:
        owner.record_consent(
            case.id,
            scopes=["panel-discussion"],
            form_version="v1",
            language="en",
            signed_on=date.today(),
            form_file_id=as_text.id,
        )
    assert err.value.field == "form_file_id" and "application/pdf" in _reasons(err)

    # nor is a text file that claims to be a PDF
    disguised = owner.upload(case.id, txt, media_type="application/pdf")
    with pytest.raises(ValidationError) as err:
        owner.record_consent(
            case.id,
            scopes=["panel-discussion"],
            form_version="v1",
            language="en",
            signed_on=date.today(),
            form_file_id=disguised.id,
        )
    assert (
        err.value.field == "form_file_id"
        and "does not match its type application/pdf" in _reasons(err)
    )

    # an unknown scope
    with pytest.raises(ValidationError) as err:
        owner.record_consent(
            case.id,
            scopes=["marketing"],
            form_version="v1",
            language="en",
            signed_on=date.today(),
            form_file_id=form.id,
        )
    assert err.value.field == "scopes"

    state = owner.consents(case.id)
    assert state["consents"] == [] and state["granted"] == [], state
    assert state["blocking_submission"] == ["consent: no consent recorded"]
    again = owner.get_case(case.id)
    assert again.content == content and again.status is CaseStatus.DRAFT
    assert not again.consent

    with pytest.raises(ValidationError) as err:
        owner.submit(case.id)
    assert err.value.reasons == ("consent: no consent recorded",), err.value.reasons


# -- the whole way: submit, panel reads, withdrawal freezes -------------------------------------


def test_submission_panel_reading_and_withdrawal(
    deployment, owner, panel, auditor, draft, tmp_path
):
    case, content = draft
    pdf = tmp_path / "consent-signed.pdf"
    pdf.write_bytes(tiny_pdf())
    seen: list[tuple[int, int]] = []
    form = owner.upload(
        case.id, pdf, media_type="application/pdf", progress=lambda s, t: seen.append((s, t))
    )
    assert seen and seen[-1] == (pdf.stat().st_size, pdf.stat().st_size)
    consent = owner.record_consent(
        case.id,
        scopes=[ConsentScope.PANEL_DISCUSSION, ConsentScope.REGISTRIES],
        form_version="ERN-consent-2024-v2",
        language="fr-BE",
        signed_on=date.today() - timedelta(days=3),
        form_file_id=form.id,
    )
    assert consent.scopes == {ConsentScope.PANEL_DISCUSSION, ConsentScope.REGISTRIES}
    assert owner.consents(case.id)["blocking_submission"] == []

    submitted = owner.submit(case.id)
    assert submitted.status is CaseStatus.SUBMITTED
    assert submitted.content == content

    # a second submission is a conflict, not a silent success
    with pytest.raises(Exception) as err:
        owner.submit(case.id)
    assert getattr(err.value, "status", None) == 409

    # not on the panel yet: refused
    with pytest.raises(PermissionDeniedError):
        panel.get_case(case.id)

    state = deployment.open_state()
    try:
        state.cases.add_member(
            case.id, "panel-p", MemberRole.PANEL_MEMBER, ctx=AuditContext(actor="test")
        )
    finally:
        state.close()
    read = panel.get_case(case.id)
    assert read.status is CaseStatus.SUBMITTED
    assert [p.hpo_id for p in read.content.phenotypes] == ["HP:0001250", "HP:0000252"]

    # the patient withdraws panel discussion: the case is frozen for the panel at once
    owner.withdraw_consent(
        case.id, consent.id, "panel-discussion", "the patient changed their mind (invented)"
    )
    with pytest.raises(PermissionDeniedError) as err:
        panel.get_case(case.id)
    assert err.value.status == 403
    assert any("frozen" in r for r in err.value.reasons), err.value.reasons
    with pytest.raises(PermissionDeniedError) as err:
        panel.list_files(case.id)
    assert any("frozen" in r for r in err.value.reasons), err.value.reasons

    mine = owner.get_case(case.id)
    assert ConsentScope.PANEL_DISCUSSION in mine.consent_withdrawn
    assert ConsentScope.PANEL_DISCUSSION not in mine.consent
    assert ConsentScope.REGISTRIES in mine.consent
    now = owner.consents(case.id)
    assert now["withdrawn"] == ["panel-discussion"]
    assert "consent: panel-discussion is withdrawn" in now["blocking_submission"]
    (record,) = now["consents"]
    assert [w.scope for w in record.withdrawals] == [ConsentScope.PANEL_DISCUSSION]
    assert record.withdrawals[0].recorded_by == "clin-a"

    # withdrawing twice is a conflict
    with pytest.raises(Exception) as err:
        owner.withdraw_consent(case.id, consent.id, "panel-discussion", "again")
    assert getattr(err.value, "status", None) == 409

    trail = auditor.audit(case_id=case.id)
    actions = [(e["actor"], e["action"], e["outcome"]) for e in trail]
    assert ("clin-a", "consent.withdraw", "allowed") in actions, actions
    withdraw = next(e for e in trail if e["action"] == "consent.withdraw")
    assert withdraw["detail"] == "scope=panel-discussion"
    assert ("clin-a", "case.submit", "allowed") in actions
    assert ("clin-a", "consent.record", "allowed") in actions
    denied = [e for e in trail if e["actor"] == "panel-p" and e["outcome"] != "allowed"]
    assert denied, actions
    # the reason given by the patient is not copied into the audit trail
    assert not any("changed their mind" in e["detail"] for e in trail)
