"""A case as an HL7 FHIR R4 (4.0.1) ``Bundle`` of type ``collection``.

Standards followed:

- HL7 FHIR R4 4.0.1 (https://hl7.org/fhir/R4/): Bundle, Composition, Patient,
  Organization, Condition, Observation, Consent, DocumentReference.
- HL7 Genomics Reporting IG (http://hl7.org/fhir/uv/genomics-reporting/) "Variant"
  profile, in simplified form: one ``Observation`` per variant with LOINC code
  69548-6 and components 48018-6 (gene studied), 48004-6 / 81290-9 / 48005-3
  (c./g./p. HGVS), 53034-5 (allelic state), 53037-8 (clinical significance).
- HL7 Phenomics Exchange IG (GA4GH Phenopackets on FHIR) "PhenotypicFeature":
  an HPO-coded ``Observation`` with ``valueBoolean`` true (observed) or false
  (excluded) and the onset as a component coded HP:0003674 "Onset".
- RFC 6920 (naming things with hashes) for the files' SHA-256.
- The panel's outcome, when there is one: a ``Condition`` (the panel's ORPHA-coded
  diagnosis, ``provisional`` until every member has signed, then ``confirmed``), a
  ``CarePlan`` (intent ``proposal``: the treatment plan, one activity per recommended
  investigation and one for the follow-up date) and a ``Provenance`` whose
  ``signature`` elements carry each member's Ed25519 signature (type ASTM E1762
  1.2.840.10065.1.12.1.1 author's signature for an endorsement, .1.12.1.7 witness
  for a recorded dissent) over the outcome's canonical JSON (RFC 8785 style).

Choices that a reader of the output needs to know:

- The bundle starts with a ``Composition`` (LOINC 11488-4 "Consult note") that
  carries what has no better home in R4 (the clinical summary, the question to
  the panel, the urgency) and indexes the other entries in sections. A
  ``collection`` (not a ``document``) bundle is used because the export is a
  snapshot of a case still under discussion, not an attested document.
- The patient is pseudonymised: one identifier (the hospital's pseudonym), sex,
  the year of birth only, the country; no name, no other identifier. The case's
  title is *not* exported: clinicians use it as a working label that often
  names or describes the person ("Baby M., Lyon"), and it carries no clinical
  content that the summary does not.
- ``Attachment.hash`` is SHA-1 in R4; the store keeps SHA-256, which goes into
  ``DocumentReference.identifier`` as an RFC 6920 ``ni:///sha-256;…`` URI.
- Entries' ``fullUrl`` are ``urn:uuid:`` UUIDv5 derived from the case id and a
  stable key (HPO id, consent id, file id, position for diagnoses and
  variants), so two exports of the same case differ only in their timestamps.

The functions here are pure: the caller passes decrypted, authorised data and
gets a JSON-ready ``dict``. :func:`validate_fhir_bundle` parses the result with
``fhir.resources``; version 8 ships R4B (4.3) and STU3 classes but not R4
(4.0.1). R4B left the resources emitted here structurally unchanged (its
changes are in the medication-definition, evidence and subscription
resources), so R4B parsing is used as the structural check, completed by the
R4 required code bindings and invariants that the library does not check.
"""

from __future__ import annotations

import base64
import html
import re
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
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
    Patient,
    Phenotype,
    Zygosity,
)
from cpms_hub.domain.consent import Consent, ConsentScope
from cpms_hub.domain.review import Outcome

__all__ = [
    "fhir_bundle",
    "validate_fhir_bundle",
    "hospital_slug",
    "ORPHANET_SYSTEM",
    "ICD10_SYSTEM",
    "HPO_SYSTEM",
    "LOINC_SYSTEM",
    "HGVS_SYSTEM",
]

ORPHANET_SYSTEM = "http://www.orpha.net"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
HPO_SYSTEM = "http://human-phenotype-ontology.org"
LOINC_SYSTEM = "http://loinc.org"
HGVS_SYSTEM = "http://varnomen.hgvs.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"
_URI_SYSTEM = "urn:ietf:rfc:3986"
_XHTML = "http://www.w3.org/1999/xhtml"

# A fixed namespace, so that the same case always yields the same entry UUIDs
# whatever the deployment's base URL.
_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:cpms:exports:fhir")

_SEX_TO_GENDER = {"female": "female", "male": "male", "other": "other", "unknown": "unknown"}

# LOINC answer list LL381-5 (allelic state). LOINC has no "compound heterozygous"
# answer: each allele of a compound heterozygote is heterozygous, which is how
# the Genomics Reporting IG codes it, so the GENO term's label goes into the text.
_ZYGOSITY_LOINC = {
    Zygosity.HETEROZYGOUS: ("LA6706-1", "Heterozygous"),
    Zygosity.HOMOZYGOUS: ("LA6705-3", "Homozygous"),
    Zygosity.HEMIZYGOUS: ("LA6707-9", "Hemizygous"),
    Zygosity.COMPOUND_HETEROZYGOUS: ("LA6706-1", "Heterozygous"),
}
_ZYGOSITY_TEXT = {
    Zygosity.HETEROZYGOUS: "heterozygous",
    Zygosity.HOMOZYGOUS: "homozygous",
    Zygosity.HEMIZYGOUS: "hemizygous",
    Zygosity.COMPOUND_HETEROZYGOUS: "compound heterozygous",
}

# LOINC answer list LL4034-6 (ACMG/AMP 2015 five-tier classification).
_ACMG_LOINC = {
    AcmgClass.PATHOGENIC: ("LA6668-3", "Pathogenic"),
    AcmgClass.LIKELY_PATHOGENIC: ("LA26332-9", "Likely pathogenic"),
    AcmgClass.UNCERTAIN: ("LA26333-7", "Uncertain significance"),
    AcmgClass.LIKELY_BENIGN: ("LA26334-5", "Likely benign"),
    AcmgClass.BENIGN: ("LA6675-8", "Benign"),
}

# HGVS description type (the letter before the dot) → LOINC component code.
_HGVS_LOINC = {
    "c": ("48004-6", "DNA change (c.HGVS)"),
    "n": ("48004-6", "DNA change (c.HGVS)"),
    "g": ("81290-9", "Genomic DNA change (gHGVS)"),
    "m": ("81290-9", "Genomic DNA change (gHGVS)"),
    "p": ("48005-3", "Amino acid change (pHGVS)"),
}
_HGVS_TYPE = re.compile(r"(?:^|:)([cgmnpr])\.")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")

_SCOPE_DISPLAY = {
    ConsentScope.PANEL_DISCUSSION: "Sharing for care and expert-panel discussion",
    ConsentScope.REGISTRIES: "Inclusion in network databases and registries",
    ConsentScope.RESEARCH_CONTACT: "Being contacted for research",
}

# Outcome signed or case closed: the panel's work on this content is over.
_FINAL_STATUSES = frozenset({CaseStatus.OUTCOME_SIGNED, CaseStatus.CLOSED})

JSON = dict[str, Any]


# --------------------------------------------------------------------------- helpers


def hospital_slug(hospital: str) -> str:
    """``"Hôpital Necker – Paris"`` → ``"hopital-necker-paris"`` (for identifier systems)."""
    ascii_ = unicodedata.normalize("NFKD", hospital).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-") or "unknown"


def _ns(base_url: str, *parts: str) -> str:
    # A URN namespace continues with ":", a URL with "/": both stay valid URIs.
    if base_url.startswith("urn:"):
        return ":".join((base_url.rstrip(":"), *parts))
    return "/".join((base_url.rstrip("/"), *parts))


def _instant(dt: datetime) -> str:
    # FHIR instant: seconds and a zone are mandatory; naive datetimes from the
    # store are UTC (cpms_hub.store keeps UTC throughout).
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        # A naive "now" is ambiguous; refusing it keeps exports comparable.
        raise ValueError("now must be timezone-aware")
    return now


def _coding(system: str, code: str, display: str = "") -> JSON:
    out: JSON = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _concept(system: str, code: str, display: str = "", text: str = "") -> JSON:
    out: JSON = {"coding": [_coding(system, code, display)]}
    if text:
        out["text"] = text
    return out


def _narrative(text: str, status: str = "additional") -> JSON:
    # XML 1.0 forbids C0 control characters other than tab and newlines; a
    # summary pasted from another system may carry some (form feeds, NULs).
    text = _CONTROL.sub("", text)
    # One <p> per non-empty line: keeps the clinician's line structure in valid XHTML.
    paragraphs = [f"<p>{html.escape(line)}</p>" for line in text.splitlines() if line.strip()]
    return {"status": status, "div": f'<div xmlns="{_XHTML}">{"".join(paragraphs)}</div>'}


class _Ids:
    """Deterministic ``urn:uuid:`` per (case, kind, key)."""

    def __init__(self, case_id: str) -> None:
        self.case_id = case_id

    def uuid(self, kind: str, key: object = "") -> str:
        return str(uuid.uuid5(_UUID_NAMESPACE, f"{self.case_id}/{kind}/{key}"))

    def url(self, kind: str, key: object = "") -> str:
        return f"urn:uuid:{self.uuid(kind, key)}"


def _entry(full_url: str, resource: JSON) -> JSON:
    resource["id"] = full_url.removeprefix("urn:uuid:")
    # "id" second after "resourceType" reads better; dicts keep insertion order.
    ordered = {"resourceType": resource.pop("resourceType"), "id": resource.pop("id"), **resource}
    return {"fullUrl": full_url, "resource": ordered}


def _ref(full_url: str) -> JSON:
    return {"reference": full_url}


# --------------------------------------------------------------------------- resources


def _patient(patient: Patient | None, hospital: str, base_url: str, org: str) -> JSON:
    res: JSON = {
        "resourceType": "Patient",
        # v3 ObservationValue PSEUDED: tells a receiver the identity is a pseudonym.
        "meta": {
            "security": [_coding(f"{_TERMINOLOGY}/v3-ObservationValue", "PSEUDED", "pseudonymized")]
        },
    }
    if patient is not None:
        res["identifier"] = [
            {
                "system": _ns(base_url, "pseudonym", hospital_slug(hospital)),
                "value": patient.pseudonym,
            }
        ]
        res["gender"] = _SEX_TO_GENDER[patient.sex.value]
        if patient.birth_year is not None:
            # FHIR "date" allows a year alone; anything finer would re-identify.
            res["birthDate"] = f"{patient.birth_year:04d}"
        if patient.country:
            res["address"] = [{"country": patient.country}]
    res["managingOrganization"] = _ref(org)
    return res


def _organization(hospital: str, base_url: str) -> JSON:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": _ns(base_url, "hospital"), "value": hospital_slug(hospital)}],
        "name": hospital,
    }


def _condition(dx: Diagnosis, patient: Patient | None, subject: str) -> JSON:
    if dx.system is DiagnosisSystem.ORPHA:
        # FHIR practice (HL7 terminology's Orphanet entry): the bare number.
        coding = _coding(ORPHANET_SYSTEM, dx.code.removeprefix("ORPHA:"), dx.label)
    else:
        coding = _coding(ICD10_SYSTEM, dx.code, dx.label)
    code: JSON = {"coding": [coding]}
    if dx.label:
        code["text"] = dx.label
    status = "confirmed" if dx.confirmed else "provisional"
    res: JSON = {
        "resourceType": "Condition",
        "verificationStatus": _concept(
            f"{_TERMINOLOGY}/condition-ver-status", status, status.capitalize()
        ),
        "code": code,
        "subject": _ref(subject),
    }
    if patient is not None and patient.age_at_onset_years is not None:
        # The patient's age at onset is that of the disorder the case is about,
        # which every listed diagnosis names or suspects.
        res["onsetAge"] = {
            "value": patient.age_at_onset_years,
            "unit": "years",
            "system": UCUM_SYSTEM,
            "code": "a",
        }
    return res


def _phenotype(ph: Phenotype, subject: str) -> JSON:
    res: JSON = {
        "resourceType": "Observation",
        "status": "final",
        "code": _concept(HPO_SYSTEM, ph.hpo_id, ph.label, ph.label),
        "subject": _ref(subject),
        # Excluded = explicitly looked for and absent (Phenopackets "excluded"),
        # which the Phenomics Exchange IG writes as valueBoolean false.
        "valueBoolean": not ph.excluded,
    }
    if ph.onset is not None:
        res["component"] = [
            {
                "code": _concept(HPO_SYSTEM, "HP:0003674", "Onset"),
                "valueCodeableConcept": _concept(
                    HPO_SYSTEM, ph.onset, ONSET_TERMS[ph.onset], ONSET_TERMS[ph.onset]
                ),
            }
        ]
    return res


def _hgvs_component(hgvs: str) -> JSON:
    match = _HGVS_TYPE.search(hgvs)
    kind = match.group(1) if match else ""
    if kind in _HGVS_LOINC:
        code, display = _HGVS_LOINC[kind]
        return {
            "code": _concept(LOINC_SYSTEM, code, display),
            "valueCodeableConcept": {"coding": [_coding(HGVS_SYSTEM, hgvs)], "text": hgvs},
        }
    # r. (RNA) or a description we cannot type: LOINC 81252-9 "Discrete genetic
    # variant" with the text as given, rather than a wrong c./g./p. claim.
    return {
        "code": _concept(LOINC_SYSTEM, "81252-9", "Discrete genetic variant"),
        "valueCodeableConcept": {"text": hgvs},
    }


def _variant(finding: GeneticFinding, subject: str) -> JSON:
    components: list[JSON] = [
        {
            "code": _concept(LOINC_SYSTEM, "48018-6", "Gene studied [ID]"),
            # Only the HGNC symbol is known, not the HGNC:nnnn id the code system
            # needs, so the symbol goes in the text.
            "valueCodeableConcept": {"text": finding.gene},
        },
        _hgvs_component(finding.hgvs),
    ]
    if finding.zygosity in _ZYGOSITY_LOINC:
        code, display = _ZYGOSITY_LOINC[finding.zygosity]
        components.append(
            {
                "code": _concept(LOINC_SYSTEM, "53034-5", "Allelic state"),
                "valueCodeableConcept": _concept(
                    LOINC_SYSTEM, code, display, _ZYGOSITY_TEXT[finding.zygosity]
                ),
            }
        )
    code, display = _ACMG_LOINC[finding.classification]
    components.append(
        {
            "code": _concept(
                LOINC_SYSTEM, "53037-8", "Genetic variation clinical significance [Imp]"
            ),
            "valueCodeableConcept": _concept(LOINC_SYSTEM, code, display, display),
        }
    )
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            _concept(f"{_TERMINOLOGY}/observation-category", "laboratory", "Laboratory"),
            _concept(f"{_TERMINOLOGY}/v2-0074", "GE", "Genetics"),
        ],
        "code": _concept(LOINC_SYSTEM, "69548-6", "Genetic variant assessment"),
        "subject": _ref(subject),
        "valueCodeableConcept": _concept(LOINC_SYSTEM, "LA9633-4", "Present"),
        "component": components,
    }


def _document(f: CaseFile, subject: str, base_url: str) -> JSON:
    digest = base64.urlsafe_b64encode(bytes.fromhex(f.sha256)).decode().rstrip("=")
    return {
        "resourceType": "DocumentReference",
        "identifier": [
            {"system": _ns(base_url, "file"), "value": f.id},
            # R4 Attachment.hash is SHA-1; SHA-256 is named per RFC 6920 instead.
            {"system": _URI_SYSTEM, "value": f"ni:///sha-256;{digest}"},
        ],
        "status": "current",
        "subject": _ref(subject),
        "date": _instant(f.created_at),
        "content": [
            {
                "attachment": {
                    "contentType": f.media_type,
                    # Relative to the store API root, where GET /cases/{id}/files/{id}
                    # serves the bytes to an authorised caller (R4 allows relative urls).
                    "url": f"cases/{f.case_id}/files/{f.id}",
                    "size": f.size,
                    "title": f.name,
                    "creation": _instant(f.created_at),
                }
            }
        ],
    }


def _scope_concept(scope: ConsentScope, base_url: str) -> JSON:
    return _concept(_ns(base_url, "consent-scope"), scope.value, _SCOPE_DISPLAY[scope])


def _consent(c: Consent, subject: str, org: str, documents: dict[str, str], base_url: str) -> JSON:
    withdrawn: dict[ConsentScope, Any] = {}
    for w in c.withdrawals:
        # The first withdrawal of a scope is when its use had to stop.
        if w.scope not in withdrawn or w.on < withdrawn[w.scope]:
            withdrawn[w.scope] = w.on
    res: JSON = {
        "resourceType": "Consent",
        # Every scope withdrawn: the consent no longer permits anything.
        "status": "active" if c.active_scopes() else "inactive",
        "scope": _concept(f"{_TERMINOLOGY}/consentscope", "patient-privacy", "Privacy Consent"),
        "category": [_concept(LOINC_SYSTEM, "59284-0", "Consent Document")],
        "patient": _ref(subject),
        "dateTime": c.signed_on.isoformat(),
        "performer": [_ref(subject)],
        "organization": [_ref(org)],
    }
    if c.form_file_id is not None and c.form_file_id in documents:
        res["sourceReference"] = _ref(documents[c.form_file_id])
    # ppc-1 needs a policy or policyRule: the patient opted in, on a versioned form.
    res["policyRule"] = {
        "coding": [_coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN", "opt-in")],
        "text": f"CPMS consent form version {c.form_version} ({c.language})",
    }
    provision: JSON = {
        "type": "permit",
        "period": {"start": c.signed_on.isoformat()},
        "code": [_scope_concept(s, base_url) for s in sorted(c.scopes, key=str)],
    }
    if withdrawn:
        provision["provision"] = [
            {
                "type": "deny",
                "period": {"start": withdrawn[s].isoformat()},
                "code": [_scope_concept(s, base_url)],
            }
            for s in sorted(withdrawn, key=str)
        ]
    res["provision"] = provision
    return res


def _section(title: str, refs: Iterable[str], code: JSON | None = None) -> JSON | None:
    entries = [_ref(r) for r in refs]
    if not entries:
        return None  # cmp-1: a section needs text, entries or sub-sections
    out: JSON = {"title": title}
    if code is not None:
        out["code"] = code
    out["entry"] = entries
    return out


def _composition(
    case: Case,
    content: CaseContent,
    *,
    subject: str,
    org: str,
    when: datetime,
    base_url: str,
    conditions: list[str],
    phenotypes: list[str],
    variants: list[str],
    documents: list[str],
    consents: list[str],
) -> JSON:
    sections: list[JSON] = []
    if case.clinical_summary.strip():
        sections.append(
            {
                "title": "Clinical summary",
                "code": _concept(LOINC_SYSTEM, "10164-2", "History of Present illness Narrative"),
                "text": _narrative(case.clinical_summary),
            }
        )
    question = content.question.strip()
    sections.append(
        {
            "title": "Question to the panel",
            "code": _concept(LOINC_SYSTEM, "42349-1", "Reason for referral (narrative)"),
            # Urgency is always stated, so the section is never empty.
            "text": _narrative(f"{question}\nUrgency: {content.urgency.value}"),
        }
    )
    for section in (
        _section(
            "Diagnoses", conditions, _concept(LOINC_SYSTEM, "11450-4", "Problem list - Reported")
        ),
        _section("Phenotypic features (HPO)", phenotypes),
        _section("Genetic findings", variants),
        _section("Attached files", documents),
        _section("Consent", consents),
    ):
        if section is not None:
            sections.append(section)
    return {
        "resourceType": "Composition",
        # R4 has no element for a request's urgency on a Composition; this
        # extension keeps it machine-readable next to the narrative above.
        "extension": [{"url": _ns(base_url, "urgency"), "valueCode": content.urgency.value}],
        "identifier": {"system": _ns(base_url, "case"), "value": case.id},
        "status": "final" if case.status in _FINAL_STATUSES else "preliminary",
        "type": _concept(LOINC_SYSTEM, "11488-4", "Consult note"),
        "subject": _ref(subject),
        "date": _instant(when),
        "author": [_ref(org)],
        # Deliberately not case.title, which may name or describe the patient.
        "title": f"Case for the {case.network} expert panel",
        # v3 Confidentiality R (restricted): special-category health data.
        "confidentiality": "R",
        "section": sections,
    }


# --------------------------------------------------------------------------- export


def _outcome_entries(outcome: Outcome, ids: _Ids, subject: str, org: str) -> list[JSON]:
    d = outcome.draft
    condition_url = ids.url("outcome", "condition")
    careplan_url = ids.url("outcome", "careplan")
    condition: JSON = {
        "resourceType": "Condition",
        "clinicalStatus": _concept(f"{_TERMINOLOGY}/condition-clinical", "active"),
        "verificationStatus": _concept(
            f"{_TERMINOLOGY}/condition-ver-status",
            "confirmed" if outcome.signed else "provisional",
        ),
        "code": _concept(
            ORPHANET_SYSTEM, d.diagnosis_code.removeprefix("ORPHA:"), d.diagnosis_label
        ),
        "subject": _ref(subject),
        "recordedDate": _instant(outcome.drafted_at),
        "note": [{"text": f"Expert panel outcome, version {outcome.version}"}],
    }
    activities: list[JSON] = [
        {"detail": {"status": "not-started", "description": item}} for item in d.investigations
    ]
    activities.append(
        {
            "detail": {
                "status": "scheduled",
                "description": "Follow-up",
                "scheduledPeriod": {"start": d.follow_up.isoformat()},
            }
        }
    )
    careplan: JSON = {
        "resourceType": "CarePlan",
        "status": "active" if outcome.signed else "draft",
        "intent": "proposal",
        "title": "Expert panel recommendation",
        "description": d.treatment_plan,
        "subject": _ref(subject),
        "created": _instant(outcome.drafted_at),
        "addresses": [_ref(condition_url)],
        "activity": activities,
    }
    if d.summary:
        careplan["note"] = [{"text": d.summary}]
    entries = [_entry(condition_url, condition), _entry(careplan_url, careplan)]
    if outcome.endorsements:
        signatures = [
            {
                "type": [
                    _coding(
                        "urn:iso-astm:E1762-95:2013",
                        "1.2.840.10065.1.12.1.1"
                        if e.decision.value == "endorse"
                        else "1.2.840.10065.1.12.1.7",
                        "Author's Signature" if e.decision.value == "endorse" else "Witness",
                    )
                ],
                "when": _instant(e.signed_at),
                "who": {"display": e.signer},
                "sigFormat": "application/octet-stream",
                "data": base64.b64encode(e.signature).decode(),
            }
            for e in outcome.endorsements
        ]
        provenance: JSON = {
            "resourceType": "Provenance",
            "target": [_ref(condition_url), _ref(careplan_url)],
            "recorded": _instant(max(e.signed_at for e in outcome.endorsements)),
            "agent": [{"who": {"display": e.signer}} for e in outcome.endorsements],
            "signature": signatures,
        }
        entries.append(_entry(ids.url("outcome", "provenance"), provenance))
    return entries


def _check_same_case(case: Case, items: Iterable[Consent | CaseFile], what: str) -> None:
    for item in items:
        if item.case_id != case.id:
            # A wrong argument would put another case's data into this export.
            raise ValueError(f"{what} {item.id} belongs to another case")


def fhir_bundle(
    case: Case,
    content: CaseContent,
    consents: Sequence[Consent],
    files: Sequence[CaseFile],
    *,
    base_url: str = "urn:cpms",
    now: datetime | None = None,
    outcome: Outcome | None = None,
) -> JSON:
    """The case as a FHIR R4 ``Bundle`` (type ``collection``), ready for ``json.dumps``.

    With ``outcome``, the panel's recommendation and its signatures are included
    (a "Panel outcome" section of the Composition indexes them).

    ``base_url`` is the namespace of CPMS's own identifier and code systems
    (``urn:cpms`` gives ``urn:cpms:pseudonym:<hospital>``, ``urn:cpms:consent-scope``;
    an ``https://`` base gives ``https://…/pseudonym/<hospital>``). ``now`` fixes
    the bundle's timestamp (default: the current time), which is the only part
    of the output that changes between two exports of unchanged data.
    """
    _check_same_case(case, consents, "consent")
    _check_same_case(case, files, "file")
    when = _now(now)
    ids = _Ids(case.id)
    patient = content.patient

    subject = ids.url("patient")
    org = ids.url("organization")
    # Sorted so that the caller's order does not change the output.
    files_sorted = sorted(files, key=lambda f: (_instant(f.created_at), f.id))
    consents_sorted = sorted(consents, key=lambda c: (c.signed_on, _instant(c.recorded_at), c.id))

    doc_urls = {f.id: ids.url("file", f.id) for f in files_sorted}
    condition_entries = [
        _entry(ids.url("diagnosis", i), _condition(dx, patient, subject))
        for i, dx in enumerate(content.diagnoses)
    ]
    phenotype_entries = [
        _entry(ids.url("phenotype", ph.hpo_id), _phenotype(ph, subject))
        for ph in content.phenotypes
    ]
    variant_entries = [
        _entry(ids.url("variant", i), _variant(g, subject)) for i, g in enumerate(content.genetics)
    ]
    document_entries = [
        _entry(doc_urls[f.id], _document(f, subject, base_url)) for f in files_sorted
    ]
    consent_entries = [
        _entry(ids.url("consent", c.id), _consent(c, subject, org, doc_urls, base_url))
        for c in consents_sorted
    ]

    def urls(entries: list[JSON]) -> list[str]:
        return [e["fullUrl"] for e in entries]

    composition = _composition(
        case,
        content,
        subject=subject,
        org=org,
        when=when,
        base_url=base_url,
        conditions=urls(condition_entries),
        phenotypes=urls(phenotype_entries),
        variants=urls(variant_entries),
        documents=urls(document_entries),
        consents=urls(consent_entries),
    )
    outcome_entries = []
    if outcome is not None:
        if outcome.case_id != case.id:
            raise ValueError("the outcome belongs to another case")
        outcome_entries = _outcome_entries(outcome, ids, subject, org)
        composition["section"].append(
            _section(
                "Panel outcome",
                urls(outcome_entries),
                _concept(LOINC_SYSTEM, "18776-5", "Plan of care note"),
            )
        )
    entries = [
        _entry(ids.url("composition"), composition),
        _entry(subject, _patient(patient, case.hospital, base_url, org)),
        _entry(org, _organization(case.hospital, base_url)),
        *condition_entries,
        *phenotype_entries,
        *variant_entries,
        *document_entries,
        *consent_entries,
        *outcome_entries,
    ]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": _instant(when),
        "entry": entries,
    }


# --------------------------------------------------------------------------- validation

# R4 required bindings of the coded elements this module emits; fhir.resources
# checks structure and cardinality but not value sets.
_REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Bundle", "type"): frozenset(
        {"document", "message", "transaction", "transaction-response", "batch"}
        | {"batch-response", "history", "searchset", "collection"}
    ),
    ("Patient", "gender"): frozenset(_SEX_TO_GENDER.values()),
    ("Observation", "status"): frozenset(
        {"registered", "preliminary", "final", "amended", "corrected", "cancelled"}
        | {"entered-in-error", "unknown"}
    ),
    ("Condition", "verificationStatus"): frozenset(
        {"unconfirmed", "provisional", "differential", "confirmed", "refuted"}
        | {"entered-in-error"}
    ),
    ("Consent", "status"): frozenset(
        {"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}
    ),
    ("DocumentReference", "status"): frozenset({"current", "superseded", "entered-in-error"}),
    ("Composition", "status"): frozenset({"preliminary", "final", "amended", "entered-in-error"}),
    ("Composition", "confidentiality"): frozenset({"U", "L", "M", "N", "R", "V"}),
}
_PROVISION_TYPES = frozenset({"deny", "permit"})
_NARRATIVE_STATUSES = frozenset({"generated", "extensions", "additional", "empty"})


def _walk(node: Any, path: str = "") -> Iterable[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _code_of(resource: JSON, element: str) -> str | None:
    value = resource.get(element)
    if isinstance(value, dict):  # a CodeableConcept: its first coding's code
        codings = value.get("coding") or [{}]
        return codings[0].get("code")
    return value


def _problems(bundle: JSON) -> list[str]:
    problems: list[str] = []
    if bundle.get("type") not in _REQUIRED_CODES[("Bundle", "type")]:
        problems.append(f"Bundle.type {bundle.get('type')!r} is not a bundle type")
    entries = bundle.get("entry") or []
    full_urls = [e.get("fullUrl") for e in entries]
    if len(set(full_urls)) != len(full_urls):
        problems.append("entry.fullUrl values are not unique")
    known = set(full_urls)
    for i, entry in enumerate(entries):
        res = entry.get("resource") or {}
        kind = res.get("resourceType", "?")
        where = f"entry[{i}] ({kind})"
        url = entry.get("fullUrl") or ""
        if url.startswith("urn:uuid:") and res.get("id") not in (None, url[9:]):
            problems.append(f"{where}: id does not match fullUrl")
        for (rtype, element), allowed in _REQUIRED_CODES.items():
            if rtype == kind and element in res and _code_of(res, element) not in allowed:
                problems.append(f"{where}: {element} {_code_of(res, element)!r} not allowed")
        if kind == "Consent" and not (res.get("policy") or res.get("policyRule")):
            problems.append(f"{where}: ppc-1 needs policy or policyRule")
        if kind == "Composition":
            for j, sec in enumerate(res.get("section") or []):
                if not (sec.get("text") or sec.get("entry") or sec.get("section")):
                    problems.append(f"{where}: section[{j}] is empty (cmp-1)")
        for path, node in _walk(res):
            if not isinstance(node, dict):
                continue
            ref = node.get("reference")
            if isinstance(ref, str) and ref not in known:
                problems.append(f"{where}: {path}.reference does not resolve in the bundle")
            if path.endswith("provision") or re.search(r"provision\[\d+\]$", path):
                if node.get("type") not in _PROVISION_TYPES:
                    problems.append(f"{where}: {path}.type {node.get('type')!r} not allowed")
            if "div" in node and node.get("status") not in _NARRATIVE_STATUSES:
                problems.append(f"{where}: {path}.status {node.get('status')!r} not allowed")
    return problems


def validate_fhir_bundle(bundle: JSON) -> None:
    """Raise ``ValueError`` unless ``bundle`` is a valid, self-contained FHIR bundle.

    Structure, types and cardinalities are checked by parsing with the
    ``fhir.resources`` R4B classes (the closest the library ships to R4; see the
    module docstring); the R4 required code bindings and invariants of the
    elements emitted here, and the resolution of every ``reference`` to an
    entry's ``fullUrl``, are checked on top.
    """
    # Imported here: the pydantic models are only needed when validating.
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError as PydanticError

    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValueError("not a FHIR Bundle")
    try:
        Bundle.model_validate(bundle)
    except PydanticError as exc:
        raise ValueError(f"not a valid FHIR Bundle: {exc}") from exc
    problems = _problems(bundle)
    if problems:
        raise ValueError("invalid FHIR Bundle: " + "; ".join(problems))
