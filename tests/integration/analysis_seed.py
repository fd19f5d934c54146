"""Consenting cases for the analysis tests, created through the real store API.

Each case is created by ``clin-a`` with its content, gets a signed consent
form and a consent record (panel discussion and, unless told otherwise,
registries), and is moved on by the store's operator methods (submitted;
some with a signed outcome) as a panel would. Phenotypes come from the HPO
annotations of real Orphanet diseases.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from cpms_hub.domain import CaseContent, CaseStatus, Diagnosis, Patient, Phenotype
from cpms_hub.store import AuditContext
from cpms_widgets import CaseStoreClient
from tests.analysis.populations import disease_terms

PDF = b"%PDF-1.4\n%%EOF\n"


@dataclass(frozen=True)
class Seeded:
    id: str
    pseudonym: str
    phenotypes: tuple[str, ...]
    consent_id: str


def seed_cases(
    deployment, token: str, n: int, *, registries: bool = True, tag: str = "AN"
) -> list[Seeded]:  # noqa: ANN001
    diseases = disease_terms()
    codes = list(diseases)[:3]
    made: list[Seeded] = []
    with CaseStoreClient(deployment.api, token) as client:
        for i in range(n):
            code = codes[i % len(codes)]
            terms = tuple(diseases[code][i % 3 : i % 3 + 5])
            pseudonym = f"{tag}-{uuid.uuid4().hex[:8].upper()}"
            content = CaseContent(
                patient=Patient(pseudonym, sex="female", birth_year=1990 + i % 3, country="FR"),
                phenotypes=tuple(Phenotype(t) for t in terms),
                diagnoses=(Diagnosis("ORPHA", code, confirmed=True),),
            )
            case = client.create_case("Invented analysis case", "invented", content=content)
            form = client._request(
                "POST",
                f"/cases/{case.id}/files",
                content=PDF,
                headers={"X-CPMS-Filename": "consent.pdf", "Content-Type": "application/pdf"},
            )
            scopes = ["panel-discussion", "registries"] if registries else ["panel-discussion"]
            consent = client.record_consent(
                case.id,
                scopes=scopes,
                form_version="v1",
                language="en",
                signed_on=date(2026, 1, 15),
                form_file_id=form["id"],
            )
            made.append(Seeded(case.id, pseudonym, terms, consent.id))
    state = deployment.open_state()
    try:
        ctx = AuditContext(actor="test-setup")
        start = datetime(2025, 1, 10, tzinfo=UTC)
        for i, s in enumerate(made):
            state.cases.set_status(s.id, CaseStatus.SUBMITTED, ctx=ctx, at=start)
            if i % 2 == 0:
                state.cases.set_status(
                    s.id,
                    CaseStatus.OUTCOME_SIGNED,
                    ctx=ctx,
                    at=start + timedelta(days=20 + i),
                )
    finally:
        state.close()
    return made
