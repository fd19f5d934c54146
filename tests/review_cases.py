"""Invented cases for the panel review tests and benchmark: submitted through the client.

:func:`submitted_case` creates a case with clinical content, attaches a signed
consent form, records consent and submits it, all as the owning clinician,
exactly as a notebook would; what comes back is ready for a coordinator to
assemble a panel. Nothing here is real patient data.
"""

from __future__ import annotations

import tempfile
import uuid
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
from cpms_widgets import CaseStoreClient
from tests.samples import tiny_pdf

__all__ = ["submitted_case", "REVIEW_CONTENT"]


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
