"""The panel outcome in exports: FHIR entries that validate, a deterministic PDF, an .ics."""

from __future__ import annotations

from datetime import UTC, date, datetime

from cpms_hub.crypto import signing
from cpms_hub.domain.review import (
    Endorsement,
    EndorsementDecision,
    Meeting,
    Outcome,
    OutcomeDraft,
    signed_statement,
)
from cpms_hub.exports import fhir_bundle, validate_fhir_bundle
from cpms_hub.exports.outcome_report import meeting_ics, outcome_pdf, outcome_sha256

from .test_fhir import sample_case, sample_consents, sample_content, sample_files

NOW = datetime(2026, 5, 4, 10, 30, tzinfo=UTC)


def signed_outcome(case_id: str) -> Outcome:
    draft = OutcomeDraft(
        "ORPHA:558",
        "Marfan syndrome",
        ("FBN1 sequencing", "echocardiography"),
        "Beta blocker; yearly imaging.",
        date(2027, 1, 15),
        "Agreed by the panel.",
    )
    unsigned = Outcome(case_id, 2, draft, "lead", NOW)
    endorsements = []
    for signer, decision, reason in (
        ("lead", EndorsementDecision.ENDORSE, ""),
        ("expert", EndorsementDecision.DISSENT, "would add an MRI"),
    ):
        private, public = signing.new_key_pair()
        statement = signed_statement(
            unsigned.document(), signer=signer, decision=decision, reason=reason
        )
        endorsements.append(
            Endorsement(
                case_id, 2, signer, decision, reason, NOW, signing.sign(private, statement), public
            )
        )
    return Outcome(case_id, 2, draft, "lead", NOW, tuple(endorsements), signed=True)


def test_fhir_bundle_with_the_outcome_validates() -> None:
    case = sample_case()
    outcome = signed_outcome(case.id)
    bundle = fhir_bundle(
        case, sample_content(), sample_consents(), sample_files(), now=NOW, outcome=outcome
    )
    validate_fhir_bundle(bundle)
    by_type: dict[str, list[dict]] = {}
    for e in bundle["entry"]:
        by_type.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    [careplan] = by_type["CarePlan"]
    assert careplan["intent"] == "proposal" and len(careplan["activity"]) == 3
    assert careplan["activity"][-1]["detail"]["scheduledPeriod"]["start"] == "2027-01-15"
    panel_dx = [c for c in by_type["Condition"] if c.get("note")]
    assert panel_dx[0]["code"]["coding"][0]["code"] == "558"
    assert panel_dx[0]["verificationStatus"]["coding"][0]["code"] == "confirmed"
    [prov] = by_type["Provenance"]
    assert [s["who"]["display"] for s in prov["signature"]] == ["lead", "expert"]
    composition = by_type["Composition"][0]
    assert composition["section"][-1]["title"] == "Panel outcome"


def test_the_bundle_without_an_outcome_is_unchanged() -> None:
    case = sample_case()
    args = (case, sample_content(), sample_consents(), sample_files())
    assert fhir_bundle(*args, now=NOW) == fhir_bundle(*args, now=NOW, outcome=None)


def test_the_pdf_is_deterministic_and_names_no_patient() -> None:
    case = sample_case()
    outcome = signed_outcome(case.id)
    pdf = outcome_pdf(outcome, network="ERN-TEST", pending=[])
    assert pdf.startswith(b"%PDF-") and pdf == outcome_pdf(outcome, network="ERN-TEST")
    assert b"Marfan syndrome" in pdf and b"FBN1 sequencing" in pdf  # the text is searchable
    assert case.title.encode() not in pdf
    patient = sample_content().patient
    assert patient.pseudonym.encode() not in pdf
    assert len(outcome_sha256(outcome)) == 64


def test_meeting_ics_is_rfc5545() -> None:
    meeting = Meeting("m-1", "c-1", "Panel meeting", NOW, 45, "lead", (("lead", "UTC"),))
    ics = meeting_ics(meeting, link="http://127.0.0.1:8000/services/cpms-review/?case=c-1").decode()
    assert ics.startswith("BEGIN:VCALENDAR") and "DTSTART:20260504T103000Z" in ics
    assert "DTEND:20260504T111500Z" in ics and "UID:m-1@cpms" in ics
