"""Outcomes by treatment at follow-up, from real signed outcomes to the data scientist's report.

One deployment for the module (real hub, proxy and store). The owner submits
six consenting cases from Python; for five of them the coordinator assembles
a panel of one lead (a different expert each, so that every signature takes a
fresh authenticator code), who accepts, gives an opinion, drafts the outcome
with a free-text treatment plan and signs it. The owner records each
follow-up as two codes. Then the data scientist's report counts them, with
the same small-cell rules as every other table, and never carries the plan's
text; a changed follow-up shows in the very next report. Along the way: no
follow-up before the outcome is signed (409), none by the panel (403), a
category outside the list is refused naming the field (422), and every write
is audited.
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from cpms_hub.domain import (
    CaseContent,
    ConflictError,
    ConsentScope,
    Diagnosis,
    Patient,
    PermissionDeniedError,
    Phenotype,
    ValidationError,
)
from cpms_hub.domain.followup import FollowUpResult, TreatmentCategory
from cpms_hub.domain.review import OutcomeDraft
from cpms_widgets import CaseStoreClient
from tests.deployment import Deployment
from tests.samples import tiny_pdf

pytestmark = pytest.mark.deployment

LEADS = [f"lead-{i}" for i in range(5)]
PEOPLE = {
    "fu-owner": (("clinician",), "Hospital A", "ERN-TEST"),
    "fu-coord": (("coordinator",), "Hospital D", "ERN-TEST"),
    "fu-sci": (("data-scientist",), "University F", "ERN-TEST"),
    "fu-audit": (("auditor",), "Office G", "ERN-TEST"),
    **{lead: (("panel-member",), f"Hospital {lead}", "ERN-TEST") for lead in LEADS},
}
#: free text that must never reach a report
PLAN = "Stiripentol-ZX17 twice daily, titrated by the ward"


@pytest.fixture(scope="module")
def dep(tmp_path_factory):  # noqa: ANN001, ANN201
    d = Deployment(tmp_path_factory.mktemp("followups"))
    d.init()
    for name, (roles, hospital, network) in PEOPLE.items():
        d.add_account(name, roles, hospital=hospital, network=network)
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def clients(dep):  # noqa: ANN001, ANN201
    made = {name: CaseStoreClient(dep.api, dep.token(name)) for name in PEOPLE}
    yield made
    for c in made.values():
        c.close()


def _submitted(owner: CaseStoreClient, i: int) -> str:
    content = CaseContent(
        patient=Patient(f"FU-{uuid.uuid4().hex[:8]}", sex="female", birth_year=2015, country="BE"),
        phenotypes=(Phenotype("HP:0001250", "Seizure"),),
        diagnoses=(Diagnosis("ORPHA", "ORPHA:33069", "Dravet syndrome"),),
        question="Which antiseizure drugs?",
    )
    case = owner.create_case(f"Invented follow-up case {i}", "invented", content=content)
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "consent-signed.pdf"
        pdf.write_bytes(tiny_pdf())
        form = owner.upload(case.id, pdf, media_type="application/pdf")
    owner.record_consent(
        case.id,
        scopes=[ConsentScope.PANEL_DISCUSSION, ConsentScope.REGISTRIES],
        form_version="ERN-consent-2024-v2",
        language="en",
        signed_on=date.today() - timedelta(days=1),
        form_file_id=form.id,
    )
    return owner.submit(case.id).id


def _signed(dep: Deployment, clients, case_id: str, lead: str) -> None:  # noqa: ANN001
    clients["fu-coord"].assemble_panel(
        case_id, [(lead, "lead")], deadline=date.today() + timedelta(days=14)
    )
    clients[lead].accept_invitation(case_id)
    clients[lead].contribute(case_id, "Fits Dravet syndrome.")
    clients[lead].draft_outcome(
        case_id,
        OutcomeDraft(
            diagnosis_code="ORPHA:33069",
            diagnosis_label="Dravet syndrome",
            investigations=("SCN1A sequencing",),
            treatment_plan=PLAN,
            follow_up=date.today() + timedelta(days=90),
        ),
    )
    signed = clients[lead].endorse_outcome(case_id, totp=dep.accounts[lead].code())
    assert signed.signed


def _report(clients) -> tuple[dict, bytes]:  # noqa: ANN001
    r = clients["fu-sci"]._http.post("/analysis/report", json={})
    assert r.status_code == 200, r.text
    return r.json(), r.content


def test_signed_outcomes_are_counted_by_treatment_at_follow_up(dep, clients) -> None:  # noqa: ANN001
    owner = clients["fu-owner"]
    case_ids = [_submitted(owner, i) for i in range(6)]

    # before any outcome: nothing to follow up, and the report says why the table is empty
    with pytest.raises(ConflictError) as err:
        owner.record_follow_up(case_ids[0], "medicinal", "improved")
    assert "signed" in err.value.reasons[0]
    data, _ = _report(clients)
    assert data["outcomes_by_treatment"]["available"] is False

    for case_id, lead in zip(case_ids, LEADS, strict=False):
        _signed(dep, clients, case_id, lead)

    # the panel does not record the follow-up; a category outside the list is refused
    with pytest.raises(PermissionDeniedError):
        clients[LEADS[0]].record_follow_up(case_ids[0], "medicinal", "improved")
    bad = owner._http.put(
        f"/cases/{case_ids[0]}/follow-up", json={"treatment": PLAN, "result": "improved"}
    )
    assert bad.status_code == 422 and bad.json()["error"]
    assert PLAN not in bad.text  # the error names the field, never echoes the value
    with pytest.raises(ValidationError) as verr:
        owner.record_follow_up(case_ids[0], "medicinal", "cured")
    assert verr.value.field == "result"
    assert owner.follow_up(case_ids[0]) is None

    # the owner records five follow-ups; the panel and the coordinator can read them
    for case_id in case_ids[:5]:
        f = owner.record_follow_up(case_id, TreatmentCategory.MEDICINAL, FollowUpResult.IMPROVED)
        assert f.recorded_by == "fu-owner" and f.draft.result is FollowUpResult.IMPROVED
    assert clients[LEADS[1]].follow_up(case_ids[1]).draft.treatment is TreatmentCategory.MEDICINAL
    assert clients["fu-coord"].follow_up(case_ids[2]).recorded_by == "fu-owner"

    data, raw = _report(clients)
    table = data["outcomes_by_treatment"]
    assert table["available"] is True
    assert table["columns"] == ["treatment", "result at follow-up"]
    assert table["cells"] == [{"key": ["medicinal", "improved"], "count": 5, "suppressed": False}]
    assert PLAN.encode() not in raw and b"Stiripentol" not in raw

    # a changed follow-up is in the very next report: two small cells, both hidden
    owner.record_follow_up(case_ids[4], "medicinal", "stable")
    table = _report(clients)[0]["outcomes_by_treatment"]
    assert {tuple(c["key"]): c["count"] for c in table["cells"]} == {
        ("medicinal", "improved"): None,
        ("medicinal", "stable"): None,
    }

    # every write audited, with the case, never the codes
    r = httpx.get(
        dep.api + "/audit",
        params={"limit": 10000},
        headers={"Authorization": f"token {dep.token('fu-audit')}"},
        trust_env=False,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    records = [e for e in r.json() if e["action"] == "followup.record"]
    allowed = [e for e in records if e["outcome"] == "allowed"]
    assert len(allowed) == 6 and {e["case_id"] for e in allowed} == set(case_ids[:5])
    assert any(e["outcome"] == "denied" and e["actor"] == LEADS[0] for e in records)
    assert not any("improved" in (e.get("detail") or "") for e in r.json())
