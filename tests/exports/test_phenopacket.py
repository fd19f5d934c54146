"""The Phenopacket v2 export: valid for the GA4GH library, pseudonymised, reproducible.

Uses the sample case of ``test_fhir`` (three HPO terms, one excluded with an
onset; an Orphanet and an ICD-10 diagnosis; two variants; two files).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime

import pytest

from cpms_hub.domain.cases import CaseStatus
from cpms_hub.domain.clinical import CaseContent, Patient, Sex
from cpms_hub.exports import phenopacket, validate_phenopacket
from tests.exports.test_fhir import (
    CASE_ID,
    NOW,
    PSEUDONYM,
    TITLE,
    sample_case,
    sample_content,
    sample_files,
)


@pytest.fixture
def packet() -> dict:
    return phenopacket(sample_case(), sample_content(), sample_files(), now=NOW)


def test_phenopacket_validates_with_the_ga4gh_library(packet: dict) -> None:
    validate_phenopacket(packet)
    assert packet["id"] == CASE_ID
    meta = packet["metaData"]
    assert meta["created"] == "2025-03-01T09:30:00Z"
    assert meta["createdBy"] == "CPMS"
    assert meta["phenopacketSchemaVersion"] == "2.0"
    prefixes = {r["namespacePrefix"] for r in meta["resources"]}
    assert prefixes == {"HP", "ORPHA", "ICD10", "GENO"}
    json.dumps(packet)


def test_subject_is_the_pseudonym_only(packet: dict) -> None:
    assert packet["subject"] == {"id": PSEUDONYM, "sex": "FEMALE"}
    text = json.dumps(packet)
    assert TITLE not in text
    assert "2023" not in text  # no year of birth: the schema would need a full date
    assert "clin-a" not in text


def test_phenotypic_features(packet: dict) -> None:
    features = {f["type"]["id"]: f for f in packet["phenotypicFeatures"]}
    assert features["HP:0000252"]["excluded"] is True
    assert features["HP:0000252"]["onset"] == {
        "ontologyClass": {"id": "HP:0003577", "label": "Congenital onset"}
    }
    assert "excluded" not in features["HP:0001250"]
    assert features["HP:0001263"]["type"]["label"] == "Global developmental delay"


def test_diseases_use_orpha_and_icd10_curies(packet: dict) -> None:
    terms = [d["term"] for d in packet["diseases"]]
    assert terms == [
        {"id": "ORPHA:1934", "label": "Early infantile epileptic encephalopathy"},
        {"id": "ICD10:G40.4", "label": "Other generalized epilepsy"},
    ]
    assert packet["diseases"][0]["onset"] == {"age": {"iso8601duration": "P0Y"}}


def test_genetic_findings_are_genomic_interpretations(packet: dict) -> None:
    (interp,) = packet["interpretations"]
    assert interp["progressStatus"] == "IN_PROGRESS"
    # the confirmed diagnosis, not the suspected one
    assert interp["diagnosis"]["disease"]["id"] == "ICD10:G40.4"
    first, second = interp["diagnosis"]["genomicInterpretations"]
    assert first["subjectOrBiosampleId"] == PSEUDONYM
    vi = first["variantInterpretation"]
    assert vi["acmgPathogenicityClassification"] == "PATHOGENIC"
    vd = vi["variationDescriptor"]
    assert vd["geneContext"] == {"symbol": "SCN1A"}
    assert vd["expressions"] == [{"syntax": "hgvs.c", "value": "NM_001165963.4:c.2589+3A>T"}]
    assert vd["allelicState"] == {"id": "GENO:0000135", "label": "heterozygous"}
    vd2 = second["variantInterpretation"]["variationDescriptor"]
    assert second["variantInterpretation"]["acmgPathogenicityClassification"] == (
        "UNCERTAIN_SIGNIFICANCE"
    )
    assert vd2["expressions"][0]["syntax"] == "hgvs.g"
    assert vd2["moleculeContext"] == "genomic"
    assert "allelicState" not in vd2


def test_files(packet: dict) -> None:
    uris = [f["uri"] for f in packet["files"]]
    assert uris == [
        f"cpms:cases/{CASE_ID}/files/7c9e6679-7425-40de-944b-e07fc1f90ae7",
        f"cpms:cases/{CASE_ID}/files/1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    ]
    assert packet["files"][1]["fileAttributes"]["name"] == "eeg-report.pdf"
    assert packet["files"][1]["fileAttributes"]["mediaType"] == "application/pdf"


def test_export_is_deterministic(packet: dict) -> None:
    again = phenopacket(sample_case(), sample_content(), sample_files()[::-1], now=NOW)
    assert json.dumps(again, sort_keys=True) == json.dumps(packet, sort_keys=True)
    later = phenopacket(sample_case(), sample_content(), sample_files())
    later["metaData"]["created"] = packet["metaData"]["created"]
    assert later == packet


def test_ontology_versions_are_passed_through() -> None:
    p = phenopacket(
        sample_case(), sample_content(), [], now=NOW, ontology_versions={"HP": "2025-01-16"}
    )
    versions = {r["namespacePrefix"]: r["version"] for r in p["metaData"]["resources"]}
    assert versions["HP"] == "2025-01-16"
    assert versions["GENO"] == "unknown"


def test_minimal_and_closed_cases() -> None:
    p = phenopacket(sample_case(), CaseContent(), [], now=NOW)
    validate_phenopacket(p)
    assert p["metaData"]["resources"] == []
    closed = phenopacket(
        sample_case(CaseStatus.CLOSED),
        dataclasses.replace(sample_content(), patient=Patient("P-1", Sex.OTHER)),
        [],
        now=NOW,
    )
    validate_phenopacket(closed)
    assert closed["subject"]["sex"] == "OTHER_SEX"
    assert closed["interpretations"][0]["progressStatus"] == "COMPLETED"


def test_other_cases_files_are_refused() -> None:
    stray = dataclasses.replace(sample_files()[0], case_id="another-case")
    with pytest.raises(ValueError, match="another case"):
        phenopacket(sample_case(), sample_content(), [stray], now=NOW)
    with pytest.raises(ValueError, match="timezone"):
        phenopacket(sample_case(), sample_content(), [], now=datetime(2025, 1, 1))
    assert phenopacket(sample_case(), sample_content(), [], now=datetime.now(UTC))


def test_validator_rejects_broken_phenopackets(packet: dict) -> None:
    unknown = copy.deepcopy(packet)
    unknown["subject"]["name"] = "Martin"
    with pytest.raises(ValueError, match="name"):
        validate_phenopacket(unknown)

    bad_enum = copy.deepcopy(packet)
    bad_enum["subject"]["sex"] = "female"
    with pytest.raises(ValueError, match="sex|Sex"):
        validate_phenopacket(bad_enum)

    undeclared = copy.deepcopy(packet)
    undeclared["metaData"]["resources"] = [
        r for r in undeclared["metaData"]["resources"] if r["namespacePrefix"] != "GENO"
    ]
    with pytest.raises(ValueError, match="GENO"):
        validate_phenopacket(undeclared)

    no_meta = copy.deepcopy(packet)
    del no_meta["metaData"]
    with pytest.raises(ValueError, match="metaData"):
        validate_phenopacket(no_meta)
