"""The clinical content of a case, in the vocabularies rare-disease experts use.

- Phenotypes are HPO terms (Human Phenotype Ontology, https://hpo.jax.org),
  observed or explicitly excluded, with an onset from HPO's "Onset" branch
  (HP:0003674), as in GA4GH Phenopackets' ``PhenotypicFeature``.
- Diagnoses are Orphanet codes (ORPHA:nnn, https://www.orpha.net) or WHO
  ICD-10 codes, with their labels, as in FHIR R4 ``Condition.code``.
- Genetic findings name an HGNC gene symbol, an HGVS variant description
  (https://varnomen.hgvs.org), the zygosity (GENO ontology terms) and the
  ACMG/AMP 2015 classification.
- The patient is pseudonymised: a local pseudonym (stored only encrypted and as
  a blind index), year of birth or age at onset, sex (FHIR
  ``AdministrativeGender``), country (ISO 3166-1 alpha-2).

These classes check shape only (formats, ranges, required fields); whether a
code exists in its vocabulary is checked by the hub against the ontologies it
ships (``cpms_hub.vocab``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from .errors import ValidationError

__all__ = [
    "Sex",
    "Urgency",
    "Zygosity",
    "AcmgClass",
    "DiagnosisSystem",
    "Patient",
    "Phenotype",
    "Diagnosis",
    "GeneticFinding",
    "CaseContent",
    "HPO_ID",
    "ORPHA_CODE",
    "ICD10_CODE",
    "ONSET_TERMS",
]

HPO_ID = re.compile(r"^HP:\d{7}$")
ORPHA_CODE = re.compile(r"^ORPHA:\d{1,7}$")
ICD10_CODE = re.compile(r"^[A-Z]\d{2}(\.\d{1,2})?$")
_GENE = re.compile(r"^[A-Z0-9][A-Za-z0-9-]{0,19}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")

#: HPO's onset classes (HP:0003674 "Onset" and its common children)
ONSET_TERMS: dict[str, str] = {
    "HP:0030674": "Antenatal onset",
    "HP:0003577": "Congenital onset",
    "HP:0003623": "Neonatal onset",
    "HP:0003593": "Infantile onset",
    "HP:0011463": "Childhood onset",
    "HP:0003621": "Juvenile onset",
    "HP:0003581": "Adult onset",
}


class Sex(StrEnum):
    """FHIR R4 AdministrativeGender."""

    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class Urgency(StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class Zygosity(StrEnum):
    """GENO zygosity terms."""

    HETEROZYGOUS = "heterozygous"  # GENO:0000135
    HOMOZYGOUS = "homozygous"  # GENO:0000136
    HEMIZYGOUS = "hemizygous"  # GENO:0000134
    COMPOUND_HETEROZYGOUS = "compound-heterozygous"  # GENO:0000402
    UNKNOWN = "unknown"


class AcmgClass(StrEnum):
    """ACMG/AMP 2015 variant classification (Richards et al., Genet Med 17:405)."""

    PATHOGENIC = "pathogenic"
    LIKELY_PATHOGENIC = "likely-pathogenic"
    UNCERTAIN = "uncertain-significance"
    LIKELY_BENIGN = "likely-benign"
    BENIGN = "benign"


class DiagnosisSystem(StrEnum):
    ORPHA = "ORPHA"
    ICD10 = "ICD-10"


def _enum(cls: type[StrEnum], value: object, field_name: str) -> StrEnum:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise ValidationError(field_name, f"must be one of {allowed}") from None


def _text(value: object, field_name: str, *, max_len: int, required: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(field_name, "must be text")
    if required and not value.strip():
        raise ValidationError(field_name, "is required")
    if len(value) > max_len:
        raise ValidationError(field_name, f"must be at most {max_len} characters")
    return value


@dataclass(frozen=True, slots=True)
class Patient:
    """The pseudonymised patient: nothing that names them."""

    pseudonym: str
    sex: Sex = Sex.UNKNOWN
    birth_year: int | None = None
    age_at_onset_years: int | None = None
    country: str | None = None

    def __post_init__(self) -> None:
        _text(self.pseudonym, "patient.pseudonym", max_len=128, required=True)
        object.__setattr__(self, "sex", _enum(Sex, self.sex, "patient.sex"))
        this_year = date.today().year
        if self.birth_year is not None:
            if not isinstance(self.birth_year, int) or not 1900 <= self.birth_year <= this_year:
                raise ValidationError(
                    "patient.birth_year", f"must be a year from 1900 to {this_year}"
                )
        if self.age_at_onset_years is not None:
            if (
                not isinstance(self.age_at_onset_years, int)
                or not 0 <= self.age_at_onset_years <= 120
            ):
                raise ValidationError("patient.age_at_onset_years", "must be 0 to 120")
        if self.country is not None and not _COUNTRY.match(self.country or ""):
            raise ValidationError("patient.country", "must be an ISO 3166-1 alpha-2 code, e.g. FR")


@dataclass(frozen=True, slots=True)
class Phenotype:
    """One HPO term, observed or excluded (Phenopackets PhenotypicFeature)."""

    hpo_id: str
    label: str = ""
    excluded: bool = False
    onset: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.hpo_id, str) or not HPO_ID.match(self.hpo_id):
            raise ValidationError("phenotypes.hpo_id", "must look like HP:0001250")
        if self.onset is not None and self.onset not in ONSET_TERMS:
            raise ValidationError("phenotypes.onset", "must be an HPO onset term, e.g. HP:0003593")
        if not isinstance(self.excluded, bool):
            raise ValidationError("phenotypes.excluded", "must be true or false")


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A suspected or confirmed diagnosis coded in Orphanet or ICD-10."""

    system: DiagnosisSystem
    code: str
    label: str = ""
    confirmed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "system", _enum(DiagnosisSystem, self.system, "diagnoses.system"))
        pattern = ORPHA_CODE if self.system is DiagnosisSystem.ORPHA else ICD10_CODE
        if not isinstance(self.code, str) or not pattern.match(self.code):
            example = "ORPHA:100" if self.system is DiagnosisSystem.ORPHA else "G40.9"
            raise ValidationError("diagnoses.code", f"must look like {example}")


@dataclass(frozen=True, slots=True)
class GeneticFinding:
    """A variant: HGNC gene symbol, HGVS description, zygosity, ACMG class."""

    gene: str
    hgvs: str
    zygosity: Zygosity = Zygosity.UNKNOWN
    classification: AcmgClass = AcmgClass.UNCERTAIN

    def __post_init__(self) -> None:
        if not isinstance(self.gene, str) or not _GENE.match(self.gene):
            raise ValidationError("genetics.gene", "must be an HGNC gene symbol, e.g. ATM")
        _text(self.hgvs, "genetics.hgvs", max_len=300, required=True)
        object.__setattr__(self, "zygosity", _enum(Zygosity, self.zygosity, "genetics.zygosity"))
        object.__setattr__(
            self, "classification", _enum(AcmgClass, self.classification, "genetics.classification")
        )


@dataclass(frozen=True, slots=True)
class CaseContent:
    """Everything the clinician describes, beyond the title."""

    patient: Patient | None = None
    phenotypes: tuple[Phenotype, ...] = field(default=())
    diagnoses: tuple[Diagnosis, ...] = field(default=())
    genetics: tuple[GeneticFinding, ...] = field(default=())
    question: str = ""
    urgency: Urgency = Urgency.ROUTINE

    def __post_init__(self) -> None:
        _text(self.question, "question", max_len=5000)
        object.__setattr__(self, "urgency", _enum(Urgency, self.urgency, "urgency"))
        if len(self.phenotypes) > 500:
            raise ValidationError("phenotypes", "at most 500 terms")
        seen = set()
        for p in self.phenotypes:
            if p.hpo_id in seen:
                raise ValidationError("phenotypes", f"{p.hpo_id} is listed twice")
            seen.add(p.hpo_id)
        codes = set()
        for d in self.diagnoses:
            if (d.system, d.code) in codes:
                raise ValidationError("diagnoses", f"{d.code} is listed twice")
            codes.add((d.system, d.code))
