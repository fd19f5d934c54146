"""Invented cases for the panel review tests and benchmark, taken through review by their
people through the store's API.

:func:`submitted_case` creates a case with clinical content, attaches a signed
consent form, records consent and submits it, all as the owning clinician,
exactly as a notebook would; what comes back is ready for a coordinator to
assemble a panel. :func:`panel_on_case` goes on from there: a coordinator of
the network assembles a panel of two new panel members, both accept, and the
member asks the owner for more information, so the owner's inbox holds a real
``information-request`` notification. :func:`sign_outcome` has the lead give an
opinion (which starts the discussion) and draft the outcome, and both sign it
with their authenticator code: the owner gets ``outcome-signed`` and the store
makes the outcome PDF. Nothing here is real patient data.
"""

from __future__ import annotations

import random
import string
import tempfile
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from cpms_hub.domain import (
    Case,
    CaseContent,
    ConsentScope,
    Diagnosis,
    GeneticFinding,
    Patient,
    Phenotype,
)
from cpms_hub.domain.review import OutcomeDraft
from cpms_widgets import CaseStoreClient
from tests.samples import tiny_pdf

__all__ = [
    "submitted_case",
    "REVIEW_CONTENT",
    "ReviewedCase",
    "panel_on_case",
    "sign_outcome",
    "QUESTION",
    "OUTCOME",
]

QUESTION = "Invented: was an EEG done during sleep?"

OUTCOME = OutcomeDraft(
    diagnosis_code="ORPHA:33069",
    diagnosis_label="Dravet syndrome",
    investigations=("Video-EEG",),
    treatment_plan="Valproate and clobazam; avoid sodium-channel blockers.",
    follow_up=date.today() + timedelta(days=90),
    summary="Invented: the panel favours Dravet syndrome.",
)


def REVIEW_CONTENT(pseudonym: str) -> CaseContent:  # noqa: N802 - reads as a constant
    return CaseContent(
        patient=Patient(pseudonym, sex="female", birth_year=2019, country="BE"),
        phenotypes=(
            Phenotype("HP:0001250", "Seizure", onset="HP:0003593"),
            Phenotype("HP:0001263", "Global developmental delay"),
        ),
        diagnoses=(Diagnosis("ORPHA", "ORPHA:33069", "Dravet syndrome"),),
        genetics=(
            GeneticFinding("SCN1A", "NM_001165963.4:c.2589+3A>T", "heterozygous", "pathogenic"),
        ),
        question="Dravet syndrome? Which antiseizure drugs to avoid?",
        urgency="urgent",
    )


def submitted_case(owner: CaseStoreClient, title: str = "Girl, 5, refractory seizures") -> Case:
    pseudonym = f"REV-{uuid.uuid4().hex[:8]}"
    case = owner.create_case(
        title, "Invented case for panel review.", content=REVIEW_CONTENT(pseudonym)
    )
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "consent-signed.pdf"
        pdf.write_bytes(tiny_pdf())
        form = owner.upload(case.id, pdf, media_type="application/pdf")
    owner.record_consent(
        case.id,
        scopes=[ConsentScope.PANEL_DISCUSSION],
        form_version="ERN-consent-2024-v2",
        language="en",
        signed_on=date.today() - timedelta(days=1),
        form_file_id=form.id,
    )
    return owner.submit(case.id)


@dataclass(frozen=True)
class ReviewedCase:
    case_id: str
    title: str
    lead: str
    member: str


def _name(prefix: str) -> str:
    return f"{prefix}-" + "".join(random.choices(string.ascii_lowercase, k=4))


def panel_on_case(
    deployment, owner_token: str, title: str, coordinator: str = "coord-n"
) -> ReviewedCase:  # noqa: ANN001
    """A submitted case of the owner, a panel that accepted, and a question to the owner."""
    lead, member = (
        deployment.add_account(_name(p), ("panel-member",), hospital=h, network="ERN-TEST").name
        for p, h in (("desklead", "Hospital L"), ("deskmember", "Hospital M"))
    )
    api = deployment.direct_api
    with CaseStoreClient(api, owner_token) as owner:
        case_id = submitted_case(owner, title).id
    with CaseStoreClient(api, deployment.token(coordinator)) as coord:
        coord.assemble_panel(
            case_id,
            [(lead, "lead"), (member, "member")],
            deadline=date.today() + timedelta(days=14),
        )
    for name in (lead, member):
        with CaseStoreClient(api, deployment.token(name)) as person:
            person.accept_invitation(case_id)
    with CaseStoreClient(api, deployment.token(member)) as person:
        person.request_information(case_id, QUESTION)
    return ReviewedCase(case_id, title, lead, member)


def sign_outcome(deployment, case: ReviewedCase) -> None:  # noqa: ANN001
    """The lead gives an opinion and drafts the outcome; lead and member sign it
    (authenticator code as step-up)."""
    api = deployment.direct_api
    with CaseStoreClient(api, deployment.token(case.lead)) as lead:
        lead.contribute(case.case_id, "Invented: fits Dravet syndrome.")  # starts the discussion
        lead.draft_outcome(case.case_id, OUTCOME)
    for name in (case.lead, case.member):
        with CaseStoreClient(api, deployment.token(name)) as person:
            person.endorse_outcome(case.case_id, totp=deployment.accounts[name].code())
