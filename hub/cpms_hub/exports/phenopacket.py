"""A case as a GA4GH Phenopacket (Phenopacket Schema v2.0, ISO 4454:2022).

The output is the schema's canonical JSON mapping (protobuf JSON: camelCase
field names, enums as their names), as a JSON-ready ``dict``; see
https://phenopacket-schema.readthedocs.io (v2). Vocabularies: HPO for
phenotypic features and onsets, Orphanet (ORDO, ``ORPHA:``) and ICD-10
(``ICD10:``) for diseases, GENO for allelic state, ACMG/AMP 2015 for variant
classification, HGVS in GA4GH VRSATILE ``Expression`` objects.

Choices that a reader of the output needs to know:

- ``subject`` holds the pseudonym and the sex only. ``Individual.dateOfBirth``
  is a full timestamp in the schema; a year of birth cannot be written without
  inventing a day, so it is left out (the FHIR export carries the year). The
  country has no place in ``Individual`` and is left out too. CPMS's ``Sex``
  is FHIR's administrative gender; it is mapped onto the phenopacket's
  (phenotypic) ``Sex`` enum as the closest available.
- The patient's age at onset becomes each disease's ``onset.age`` (ISO 8601
  ``PnY``), since it dates the disorder the case is about.
- Genetic findings go into one ``Interpretation`` whose ``progressStatus`` is
  ``COMPLETED`` once the panel's outcome is signed (or the case closed) and
  ``IN_PROGRESS`` before. Its ``diagnosis.disease`` is the first *confirmed*
  diagnosis; with none, it is left out rather than promote a suspicion to a
  diagnosis. ``interpretationStatus`` is ``UNKNOWN_STATUS``: CPMS records each
  variant's ACMG class, not whether it causes the disease.
- ``geneContext`` has the HGNC symbol but no ``valueId``: CPMS does not hold
  HGNC ids.
- An ontology class without a label (the clinician left it blank) gets its id
  as the label, since the schema requires a label.
- ``metaData.resources`` lists exactly the vocabularies used. Their versions
  are those the caller passes (the releases the hub ships), else "unknown".
- The case title is not exported (see :mod:`cpms_hub.exports.fhir`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cpms_hub.domain.cases import Case, CaseFile, CaseStatus
from cpms_hub.domain.clinical import (
    ONSET_TERMS,
    AcmgClass,
    CaseContent,
    Diagnosis,
    DiagnosisSystem,
    GeneticFinding,
    Phenotype,
    Sex,
    Zygosity,
)

__all__ = ["phenopacket", "validate_phenopacket", "SCHEMA_VERSION", "RESOURCES"]

SCHEMA_VERSION = "2.0"

JSON = dict[str, Any]

#: the vocabularies a CPMS phenopacket may use, keyed by namespace prefix
RESOURCES: dict[str, JSON] = {
    "HP": {
        "id": "hp",
        "name": "human phenotype ontology",
        "url": "http://purl.obolibrary.org/obo/hp.owl",
        "namespacePrefix": "HP",
        "iriPrefix": "http://purl.obolibrary.org/obo/HP_",
    },
    "ORPHA": {
        "id": "ordo",
        "name": "Orphanet Rare Disease Ontology",
        "url": "http://www.orpha.net/ontology/orphanet.owl",
        "namespacePrefix": "ORPHA",
        "iriPrefix": "http://www.orpha.net/ORDO/Orphanet_",
    },
    "ICD10": {
        "id": "icd10",
        "name": "International Statistical Classification of Diseases, 10th Revision",
        "url": "https://icd.who.int/browse10",
        "namespacePrefix": "ICD10",
        "iriPrefix": "https://icd.who.int/browse10/2019/en#/",
    },
    "GENO": {
        "id": "geno",
        "name": "Genotype Ontology",
        "url": "http://purl.obolibrary.org/obo/geno.owl",
        "namespacePrefix": "GENO",
        "iriPrefix": "http://purl.obolibrary.org/obo/GENO_",
    },
}

_SEX = {
    Sex.FEMALE: "FEMALE",
    Sex.MALE: "MALE",
    Sex.OTHER: "OTHER_SEX",
    Sex.UNKNOWN: "UNKNOWN_SEX",
}

_ACMG = {
    AcmgClass.PATHOGENIC: "PATHOGENIC",
    AcmgClass.LIKELY_PATHOGENIC: "LIKELY_PATHOGENIC",
    AcmgClass.UNCERTAIN: "UNCERTAIN_SIGNIFICANCE",
    AcmgClass.LIKELY_BENIGN: "LIKELY_BENIGN",
    AcmgClass.BENIGN: "BENIGN",
}

_GENO = {
    Zygosity.HETEROZYGOUS: ("GENO:0000135", "heterozygous"),
    Zygosity.HOMOZYGOUS: ("GENO:0000136", "homozygous"),
    Zygosity.HEMIZYGOUS: ("GENO:0000134", "hemizygous"),
    Zygosity.COMPOUND_HETEROZYGOUS: ("GENO:0000402", "compound heterozygous"),
}

# VRSATILE expression syntax and molecule context from the HGVS type letter.
_HGVS_TYPE = re.compile(r"(?:^|:)([cgmnpr])\.")
_MOLECULE = {
    "c": "transcript",
    "n": "transcript",
    "r": "transcript",
    "g": "genomic",
    "m": "genomic",
    "p": "protein",
}

_FINAL_STATUSES = frozenset({CaseStatus.OUTCOME_SIGNED, CaseStatus.CLOSED})


def _timestamp(dt: datetime) -> str:
    # protobuf Timestamp JSON: RFC 3339 in UTC with "Z".
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _term(curie: str, label: str) -> JSON:
    return {"id": curie, "label": label or curie}


def _disease_curie(dx: Diagnosis) -> str:
    if dx.system is DiagnosisSystem.ORPHA:
        return dx.code  # already "ORPHA:nnn"
    return f"ICD10:{dx.code}"


def _feature(ph: Phenotype) -> JSON:
    out: JSON = {"type": _term(ph.hpo_id, ph.label)}
    if ph.excluded:
        out["excluded"] = True
    if ph.onset is not None:
        out["onset"] = {"ontologyClass": _term(ph.onset, ONSET_TERMS[ph.onset])}
    return out


def _disease(dx: Diagnosis, onset_years: int | None) -> JSON:
    out: JSON = {"term": _term(_disease_curie(dx), dx.label)}
    if onset_years is not None:
        out["onset"] = {"age": {"iso8601duration": f"P{onset_years}Y"}}
    return out


def _genomic(case_id: str, i: int, finding: GeneticFinding, subject_id: str) -> JSON:
    match = _HGVS_TYPE.search(finding.hgvs)
    kind = match.group(1) if match else ""
    descriptor: JSON = {
        # Stable per case and position, so two exports agree.
        "id": f"{case_id}-variant-{i}",
        "geneContext": {"symbol": finding.gene},
        "expressions": [{"syntax": f"hgvs.{kind}" if kind else "hgvs", "value": finding.hgvs}],
    }
    if kind in _MOLECULE:
        descriptor["moleculeContext"] = _MOLECULE[kind]
    if finding.zygosity in _GENO:
        descriptor["allelicState"] = _term(*_GENO[finding.zygosity])
    return {
        "subjectOrBiosampleId": subject_id,
        "interpretationStatus": "UNKNOWN_STATUS",
        "variantInterpretation": {
            "acmgPathogenicityClassification": _ACMG[finding.classification],
            "variationDescriptor": descriptor,
        },
    }


def _prefixes(packet: JSON) -> set[str]:
    """Namespace prefixes of every ontology-class id in ``packet``."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if set(node) == {"id", "label"} and ":" in str(node["id"]):
                found.add(str(node["id"]).split(":", 1)[0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(packet)
    return found


def phenopacket(
    case: Case,
    content: CaseContent,
    files: Sequence[CaseFile],
    *,
    now: datetime | None = None,
    ontology_versions: Mapping[str, str] | None = None,
) -> JSON:
    """The case as a GA4GH Phenopacket v2 ``dict`` (protobuf JSON mapping).

    ``now`` fixes ``metaData.created`` (default: the current time; must be
    timezone-aware), the only part that changes between two exports of
    unchanged data. ``ontology_versions`` maps namespace prefixes (``HP``,
    ``ORPHA``, ``ICD10``, ``GENO``) to the releases in use.
    """
    for f in files:
        if f.case_id != case.id:
            # A wrong argument would put another case's file into this export.
            raise ValueError(f"file {f.id} belongs to another case")
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    versions = dict(ontology_versions or {})
    patient = content.patient

    subject_id = patient.pseudonym if patient is not None else f"{case.id}-subject"
    subject: JSON = {"id": subject_id}
    if patient is not None:
        subject["sex"] = _SEX[patient.sex]
    onset_years = patient.age_at_onset_years if patient is not None else None

    packet: JSON = {"id": case.id, "subject": subject}
    if content.phenotypes:
        packet["phenotypicFeatures"] = [_feature(ph) for ph in content.phenotypes]
    if content.genetics:
        diagnosis: JSON = {}
        confirmed = next((dx for dx in content.diagnoses if dx.confirmed), None)
        if confirmed is not None:
            diagnosis["disease"] = _term(_disease_curie(confirmed), confirmed.label)
        diagnosis["genomicInterpretations"] = [
            _genomic(case.id, i, g, subject_id) for i, g in enumerate(content.genetics)
        ]
        packet["interpretations"] = [
            {
                "id": f"{case.id}-interpretation",
                "progressStatus": (
                    "COMPLETED" if case.status in _FINAL_STATUSES else "IN_PROGRESS"
                ),
                "diagnosis": diagnosis,
            }
        ]
    if content.diagnoses:
        packet["diseases"] = [_disease(dx, onset_years) for dx in content.diagnoses]
    if files:
        packet["files"] = [
            {
                "uri": f"cpms:cases/{f.case_id}/files/{f.id}",
                # fileAttributes is a free string map; keys follow the schema's
                # camelCase examples ("fileFormat", "genomeAssembly").
                "fileAttributes": {
                    "name": f.name,
                    "mediaType": f.media_type,
                    "size": str(f.size),
                    "sha256": f.sha256,
                },
            }
            # Sorted so that the caller's order does not change the output.
            for f in sorted(files, key=lambda f: (_timestamp(f.created_at), f.id))
        ]
    used = _prefixes(packet)
    packet["metaData"] = {
        "created": _timestamp(now),
        "createdBy": "CPMS",
        "resources": [
            {**RESOURCES[p], "version": versions.get(p, "unknown")} for p in RESOURCES if p in used
        ],
        "phenopacketSchemaVersion": SCHEMA_VERSION,
    }
    return packet


def _ontology_ids(message: Any) -> list[str]:
    """Every ``OntologyClass.id`` in a parsed phenopacket (walks the protobuf)."""
    ids: list[str] = []
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            continue  # string maps only (fileAttributes and the like)
        # is_repeated is protobuf >= 6; label (deprecated there) before it.
        repeated = (
            field.is_repeated
            if hasattr(field, "is_repeated")
            else field.label == field.LABEL_REPEATED
        )
        values = value if repeated else [value]
        for item in values:
            if field.message_type.name == "OntologyClass":
                ids.append(item.id)
            else:
                ids.extend(_ontology_ids(item))
    return ids


def validate_phenopacket(packet: JSON) -> None:
    """Raise ``ValueError`` unless ``packet`` is a valid Phenopacket v2.

    Parsing with the GA4GH ``phenopackets`` protobuf classes rejects unknown
    fields, wrong types and unknown enum values; the schema's rules that
    protobuf cannot express are checked on top: the required ``id``,
    ``subject.id`` and ``metaData`` fields, and one ``metaData.resources``
    entry for the prefix of every ontology class used.
    """
    # Imported here: the protobuf classes are only needed when validating.
    import phenopackets
    from google.protobuf.json_format import ParseDict, ParseError

    try:
        message = ParseDict(packet, phenopackets.Phenopacket())
    except (ParseError, TypeError, ValueError) as exc:
        raise ValueError(f"not a valid Phenopacket: {exc}") from exc
    problems: list[str] = []
    if not message.id:
        problems.append("id is required")
    if message.HasField("subject") and not message.subject.id:
        problems.append("subject.id is required")
    meta = message.meta_data
    if not message.HasField("meta_data"):
        problems.append("metaData is required")
    else:
        if not meta.HasField("created"):
            problems.append("metaData.created is required")
        if not meta.created_by:
            problems.append("metaData.createdBy is required")
        if not meta.phenopacket_schema_version:
            problems.append("metaData.phenopacketSchemaVersion is required")
    declared = {r.namespace_prefix for r in meta.resources}
    for curie in _ontology_ids(message):
        prefix = curie.split(":", 1)[0] if ":" in curie else ""
        if not prefix:
            problems.append(f"ontology class id {curie!r} is not a CURIE")
        elif prefix not in declared:
            problems.append(f"no metaData.resources entry for prefix {prefix}")
    if problems:
        raise ValueError("invalid Phenopacket: " + "; ".join(sorted(set(problems))))
