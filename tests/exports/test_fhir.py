"""The FHIR R4 export: valid for the field's library, pseudonymised, self-contained, reproducible.

The sample case below is also used by ``test_phenopacket``: three HPO terms
(one excluded, with an onset), an Orphanet and an ICD-10 diagnosis, two
variants, a pseudonymised patient, a consent whose "registries" scope was
withdrawn, and two files (one of them the signed consent form).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, date, datetime

import pytest

from cpms_hub.domain.cases import Case, CaseFile, CaseMember, CaseStatus
from cpms_hub.domain.clinical import (
    AcmgClass,
    CaseContent,
    Diagnosis,
    DiagnosisSystem,
    GeneticFinding,
    Patient,
    Phenotype,
    Sex,
    Urgency,
    Zygosity,
)
from cpms_hub.domain.consent import Consent, ConsentScope, Withdrawal
from cpms_hub.domain.roles import MemberRole
from cpms_hub.exports import fhir_bundle, hospital_slug, validate_fhir_bundle

CASE_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
TITLE = "Baby Martin from Lyon, seizures since birth"
PSEUDONYM = "LYON-2024-0042"
NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
T0 = datetime(2025, 1, 10, 8, 0, tzinfo=UTC)


def sample_case(status: CaseStatus = CaseStatus.SUBMITTED) -> Case:
    return Case(
        id=CASE_ID,
        owner="clin-a",
        hospital="Hôpital Femme Mère Enfant",
        network="ERN-ITHACA",
        status=status,
        title=TITLE,
        clinical_summary="Infant with refractory seizures.\nNormal MRI at 3 months.",
        created_at=T0,
        updated_at=T0,
        members=(
            CaseMember("clin-a", MemberRole.OWNER, T0),
            CaseMember("panel-p", MemberRole.PANEL_MEMBER, T0),
        ),
    )


def sample_content() -> CaseContent:
    return CaseContent(
        patient=Patient(
            pseudonym=PSEUDONYM,
            sex=Sex.FEMALE,
            birth_year=2023,
            age_at_onset_years=0,
            country="FR",
        ),
        phenotypes=(
            Phenotype("HP:0001250", "Seizure", onset="HP:0003623"),
            Phenotype("HP:0001263", "Global developmental delay"),
            Phenotype("HP:0000252", "Microcephaly", excluded=True, onset="HP:0003577"),
        ),
        diagnoses=(
            Diagnosis(
                DiagnosisSystem.ORPHA, "ORPHA:1934", "Early infantile epileptic encephalopathy"
            ),
            Diagnosis(DiagnosisSystem.ICD10, "G40.4", "Other generalized epilepsy", confirmed=True),
        ),
        genetics=(
            GeneticFinding(
                "SCN1A", "NM_001165963.4:c.2589+3A>T", Zygosity.HETEROZYGOUS, AcmgClass.PATHOGENIC
            ),
            GeneticFinding(
                "KCNQ2", "NC_000020.11:g.63400210C>T", Zygosity.UNKNOWN, AcmgClass.UNCERTAIN
            ),
        ),
        question="Is the SCN1A variant sufficient to explain the phenotype?",
        urgency=Urgency.URGENT,
    )


def sample_files() -> list[CaseFile]:
    return [
        CaseFile(
            id="7c9e6679-7425-40de-944b-e07fc1f90ae7",
            case_id=CASE_ID,
            name="consent-signed.pdf",
            media_type="application/pdf",
            size=52_311,
            sha256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            created_by="clin-a",
            created_at=datetime(2025, 1, 11, 10, 0, tzinfo=UTC),
        ),
        CaseFile(
            id="1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            case_id=CASE_ID,
            name="eeg-report.pdf",
            media_type="application/pdf",
            size=1_024,
            sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            created_by="clin-a",
            created_at=datetime(2025, 1, 12, 10, 0, tzinfo=UTC),
        ),
    ]


def sample_consents() -> list[Consent]:
    return [
        Consent(
            id="c-1",
            case_id=CASE_ID,
            scopes=frozenset(ConsentScope),
            form_version="ERN-2023-v2",
            language="fr",
            signed_on=date(2025, 1, 11),
            recorded_by="clin-a",
            recorded_at=datetime(2025, 1, 11, 10, 5, tzinfo=UTC),
            form_file_id="7c9e6679-7425-40de-944b-e07fc1f90ae7",
            withdrawals=(
                Withdrawal(
                    ConsentScope.REGISTRIES,
                    date(2025, 2, 1),
                    "changed her mind",
                    "clin-a",
                    datetime(2025, 2, 1, 12, 0, tzinfo=UTC),
                ),
            ),
        )
    ]


@pytest.fixture
def bundle() -> dict:
    return fhir_bundle(sample_case(), sample_content(), sample_consents(), sample_files(), now=NOW)


def _resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def _references(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []


def test_bundle_validates_with_fhir_resources(bundle: dict) -> None:
    validate_fhir_bundle(bundle)
    assert bundle["type"] == "collection"
    assert bundle["timestamp"] == "2025-03-01T09:30:00Z"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds[0] == "Composition"
    assert kinds.count("Condition") == 2
    assert kinds.count("Observation") == 5  # three phenotypes, two variants
    assert kinds.count("DocumentReference") == 2
    assert kinds.count("Consent") == 1
    # the output is plain JSON
    json.dumps(bundle)


def test_patient_is_pseudonymised(bundle: dict) -> None:
    (patient,) = _resources(bundle, "Patient")
    assert "name" not in patient
    assert patient["identifier"] == [
        {"system": "urn:cpms:pseudonym:hopital-femme-mere-enfant", "value": PSEUDONYM}
    ]
    assert patient["birthDate"] == "2023"  # the year, nothing finer
    assert patient["gender"] == "female"
    assert patient["address"] == [{"country": "FR"}]
    assert set(patient) <= {
        "resourceType",
        "id",
        "meta",
        "identifier",
        "gender",
        "birthDate",
        "address",
        "managingOrganization",
    }
    # neither the title nor the owner's account name appears anywhere
    text = json.dumps(bundle)
    assert TITLE not in text
    assert "Baby Martin" not in text
    assert "clin-a" not in text


def test_hospital_slug() -> None:
    assert hospital_slug("Hôpital Necker – Paris") == "hopital-necker-paris"
    assert hospital_slug("Hospital A") == "hospital-a"
    assert hospital_slug("!!!") == "unknown"


def test_diagnoses_are_coded_in_orphanet_and_icd10(bundle: dict) -> None:
    orpha, icd = _resources(bundle, "Condition")
    assert orpha["code"]["coding"][0]["system"] == "http://www.orpha.net"
    assert orpha["code"]["coding"][0]["code"] == "1934"
    assert orpha["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert icd["code"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/icd-10",
        "code": "G40.4",
        "display": "Other generalized epilepsy",
    }
    assert icd["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert icd["onsetAge"]["value"] == 0


def test_excluded_phenotypes_are_marked_absent(bundle: dict) -> None:
    by_code = {
        o["code"]["coding"][0]["code"]: o
        for o in _resources(bundle, "Observation")
        if o["code"]["coding"][0]["system"] == "http://human-phenotype-ontology.org"
    }
    assert set(by_code) == {"HP:0001250", "HP:0001263", "HP:0000252"}
    assert by_code["HP:0001250"]["valueBoolean"] is True
    assert by_code["HP:0000252"]["valueBoolean"] is False
    (onset,) = by_code["HP:0000252"]["component"]
    assert onset["code"]["coding"][0]["code"] == "HP:0003674"
    assert onset["valueCodeableConcept"]["coding"][0]["code"] == "HP:0003577"
    assert "component" not in by_code["HP:0001263"]


def test_variants_follow_the_genomics_reporting_pattern(bundle: dict) -> None:
    variants = [
        o for o in _resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "69548-6"
    ]
    assert len(variants) == 2
    scn1a = {
        c["code"]["coding"][0]["code"]: c["valueCodeableConcept"] for c in variants[0]["component"]
    }
    assert scn1a["48018-6"]["text"] == "SCN1A"
    assert scn1a["48004-6"]["coding"][0]["code"] == "NM_001165963.4:c.2589+3A>T"
    assert scn1a["53034-5"]["coding"][0]["code"] == "LA6706-1"
    assert scn1a["53037-8"]["coding"][0]["code"] == "LA6668-3"
    kcnq2 = {
        c["code"]["coding"][0]["code"]: c["valueCodeableConcept"] for c in variants[1]["component"]
    }
    assert kcnq2["81290-9"]["coding"][0]["code"] == "NC_000020.11:g.63400210C>T"
    assert "53034-5" not in kcnq2  # zygosity unknown: no allelic state
    assert kcnq2["53037-8"]["coding"][0]["code"] == "LA26333-7"


def test_withdrawn_scope_is_a_deny_provision(bundle: dict) -> None:
    (consent,) = _resources(bundle, "Consent")
    assert consent["status"] == "active"  # two scopes remain
    assert consent["scope"]["coding"][0]["code"] == "patient-privacy"
    assert consent["category"][0]["coding"][0]["code"] == "59284-0"
    assert consent["dateTime"] == "2025-01-11"
    provision = consent["provision"]
    assert provision["type"] == "permit"
    granted = {c["coding"][0]["code"] for c in provision["code"]}
    assert granted == {"panel-discussion", "registries", "research-contact"}
    (deny,) = provision["provision"]
    assert deny["type"] == "deny"
    assert deny["code"][0]["coding"][0] == {
        "system": "urn:cpms:consent-scope",
        "code": "registries",
        "display": "Inclusion in network databases and registries",
    }
    assert deny["period"] == {"start": "2025-02-01"}
    assert "changed her mind" not in json.dumps(bundle)  # the reason stays in CPMS
    # the signed form is the consent's source
    (form_url,) = [
        e["fullUrl"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "DocumentReference"
        and e["resource"]["content"][0]["attachment"]["title"] == "consent-signed.pdf"
    ]
    assert consent["sourceReference"] == {"reference": form_url}


def test_consent_with_every_scope_withdrawn_is_inactive() -> None:
    (c,) = sample_consents()
    everything = [
        Withdrawal(s, date(2025, 2, 1), "", "clin-a", datetime(2025, 2, 1, tzinfo=UTC))
        for s in ConsentScope
    ]
    c = dataclasses.replace(c, withdrawals=tuple(everything))
    b = fhir_bundle(sample_case(), sample_content(), [c], sample_files(), now=NOW)
    validate_fhir_bundle(b)
    (consent,) = _resources(b, "Consent")
    assert consent["status"] == "inactive"
    assert len(consent["provision"]["provision"]) == 3


def test_files_are_document_references_without_sha256_in_hash(bundle: dict) -> None:
    docs = _resources(bundle, "DocumentReference")
    assert [d["content"][0]["attachment"]["title"] for d in docs] == [
        "consent-signed.pdf",
        "eeg-report.pdf",
    ]
    att = docs[1]["content"][0]["attachment"]
    assert att["url"] == f"cases/{CASE_ID}/files/1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert att["contentType"] == "application/pdf"
    assert att["size"] == 1024
    assert "hash" not in att  # R4's hash is SHA-1; we only know SHA-256
    assert {
        "system": "urn:ietf:rfc:3986",
        "value": "ni:///sha-256;n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg",
    } in docs[1]["identifier"]
    assert all(d["status"] == "current" for d in docs)


def test_composition_carries_summary_question_and_urgency(bundle: dict) -> None:
    (comp,) = _resources(bundle, "Composition")
    assert comp["type"]["coding"][0]["code"] == "11488-4"
    assert comp["identifier"] == {"system": "urn:cpms:case", "value": CASE_ID}
    assert comp["status"] == "preliminary"
    assert TITLE not in comp["title"]
    titles = [s["title"] for s in comp["section"]]
    assert titles[:2] == ["Clinical summary", "Question to the panel"]
    assert "Normal MRI at 3 months." in comp["section"][0]["text"]["div"]
    assert "Urgency: urgent" in comp["section"][1]["text"]["div"]
    assert comp["extension"] == [{"url": "urn:cpms:urgency", "valueCode": "urgent"}]
    indexed = set(_references(comp["section"]))
    others = {e["fullUrl"] for e in bundle["entry"][3:]}  # after composition, patient, org
    assert indexed == others


def test_every_reference_resolves_to_an_entry(bundle: dict) -> None:
    full_urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(full_urls) == len(set(full_urls))
    assert all(u.startswith("urn:uuid:") for u in full_urls)
    refs = _references(bundle)
    assert refs and set(refs) <= set(full_urls)
    for e in bundle["entry"]:
        assert e["fullUrl"] == f"urn:uuid:{e['resource']['id']}"


def test_export_is_deterministic(bundle: dict) -> None:
    files = sample_files()[::-1]  # the caller's order does not matter
    again = fhir_bundle(sample_case(), sample_content(), sample_consents(), files, now=NOW)
    assert json.dumps(again, sort_keys=True) == json.dumps(bundle, sort_keys=True)
    later = fhir_bundle(
        sample_case(), sample_content(), sample_consents(), sample_files(), now=datetime.now(UTC)
    )
    later["timestamp"] = bundle["timestamp"]
    comp = next(
        e["resource"] for e in later["entry"] if e["resource"]["resourceType"] == "Composition"
    )
    comp["date"] = bundle["timestamp"]
    assert later == bundle


def test_https_base_url_makes_url_systems() -> None:
    b = fhir_bundle(
        sample_case(),
        sample_content(),
        sample_consents(),
        sample_files(),
        base_url="https://cpms.example.org/fhir/",
        now=NOW,
    )
    validate_fhir_bundle(b)
    (patient,) = _resources(b, "Patient")
    assert patient["identifier"][0]["system"] == (
        "https://cpms.example.org/fhir/pseudonym/hopital-femme-mere-enfant"
    )


def test_minimal_case_exports() -> None:
    case = sample_case(CaseStatus.CLOSED)
    b = fhir_bundle(case, CaseContent(), [], [], now=NOW)
    validate_fhir_bundle(b)
    (patient,) = _resources(b, "Patient")
    assert "identifier" not in patient
    (comp,) = _resources(b, "Composition")
    assert comp["status"] == "final"


def test_other_cases_data_is_refused() -> None:
    stray = dataclasses.replace(sample_files()[0], case_id="another-case")
    with pytest.raises(ValueError, match="another case"):
        fhir_bundle(sample_case(), sample_content(), [], [stray], now=NOW)
    with pytest.raises(ValueError, match="timezone"):
        fhir_bundle(sample_case(), sample_content(), [], [], now=datetime(2025, 1, 1))


def test_validator_rejects_broken_bundles(bundle: dict) -> None:
    dangling = copy.deepcopy(bundle)
    dangling["entry"] = [e for e in dangling["entry"] if e["resource"]["resourceType"] != "Patient"]
    with pytest.raises(ValueError, match="does not resolve"):
        validate_fhir_bundle(dangling)

    bad_gender = copy.deepcopy(bundle)
    _resources(bad_gender, "Patient")[0]["gender"] = "femme"
    with pytest.raises(ValueError, match="gender"):
        validate_fhir_bundle(bad_gender)

    unknown_field = copy.deepcopy(bundle)
    _resources(unknown_field, "Patient")[0]["name"] = "Martin"  # wrong type: list expected
    with pytest.raises(ValueError, match="name"):
        validate_fhir_bundle(unknown_field)

    bad_provision = copy.deepcopy(bundle)
    _resources(bad_provision, "Consent")[0]["provision"]["provision"][0]["type"] = "maybe"
    with pytest.raises(ValueError, match="type"):
        validate_fhir_bundle(bad_provision)

    day_of_birth = copy.deepcopy(bundle)
    _resources(day_of_birth, "Patient")[0]["birthDate"] = "2023-13"
    with pytest.raises(ValueError, match="birthDate"):
        validate_fhir_bundle(day_of_birth)


def test_narrative_is_escaped_xhtml() -> None:
    case = dataclasses.replace(sample_case(), clinical_summary="CK < 200 & <b>bold</b>\x0cnext")
    b = fhir_bundle(case, sample_content(), [], [], now=NOW)
    validate_fhir_bundle(b)
    (comp,) = _resources(b, "Composition")
    div = comp["section"][0]["text"]["div"]
    assert "<p>CK &lt; 200 &amp; &lt;b&gt;bold&lt;/b&gt;next</p>" in div
