"""The EU rare-disease registries' Set of Common Data Elements, one CSV row per case.

Standard: the "Set of common data elements for Rare Diseases Registration"
of the European Platform on Rare Disease Registration (EU RD Platform, JRC,
2017) — 16 elements in 8 groups, plus the optional disability element. The
CSV's header names each element by its number and name in that set. What
CPMS does not record is left empty, never guessed:

- 2.1 date of birth: CPMS keeps only the year of birth (``YYYY``);
- 3.x patient status and date of death, 5.2 age at diagnosis, 7.3/7.4
  biobank, 8.1 disability: not recorded by CPMS, empty;
- 4.1 first contact with the specialised centre: the date the case was
  created at the expert centre;
- 6.1 / 6.2: confirmed ORPHA and ICD-10 diagnoses; 6.3 genetic diagnosis as
  ``GENE:HGVS``; 6.4 undiagnosed case: the observed HPO terms when nothing is
  confirmed;
- 7.1 agreement to be contacted: the ``research-contact`` consent scope; 7.2
  consent to the reuse of data: ``registries`` (every exported case has it).

Cells that a spreadsheet would run as a formula (starting ``= + - @``) are
prefixed with ``'`` (OWASP CSV injection advice).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from cpms_hub.domain.analysis import CaseFacts

__all__ = ["CDE_COLUMNS", "registry_rows", "registry_csv"]

CDE_COLUMNS: tuple[str, ...] = (
    "1.1 Pseudonym",
    "2.1 Date of birth",
    "2.2 Sex",
    "3.1 Patient's status",
    "3.2 Date of death",
    "4.1 First contact with specialised centre",
    "5.1 Age at onset",
    "5.2 Age at diagnosis",
    "6.1 Diagnosis of the rare disease (ORPHAcode)",
    "6.2 Diagnosis of the rare disease (ICD-10)",
    "6.3 Genetic diagnosis",
    "6.4 Undiagnosed case",
    "7.1 Agreement to be contacted for research purposes",
    "7.2 Consent to the reuse of data",
    "7.3 Biological sample",
    "7.4 Link to a biobank",
    "8.1 Classification of functioning/disability",
)

_SEX = {"female": "Female", "male": "Male", "other": "Undetermined", "unknown": "Unknown"}


def _safe(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def registry_rows(facts: Sequence[CaseFacts]) -> list[dict[str, str]]:
    rows = []
    for f in facts:
        orpha = [c for c in f.orpha if c in f.confirmed]
        icd10 = [c for c in f.icd10 if c in f.confirmed]
        values = (
            f.pseudonym or "",
            str(f.birth_year) if f.birth_year else "",
            _SEX.get(f.sex, "Unknown"),
            "",
            "",
            f.created_at.date().isoformat(),
            str(f.age_at_onset_years) if f.age_at_onset_years is not None else "",
            "",
            ";".join(orpha),
            ";".join(icd10),
            ";".join(f"{gene}:{hgvs}" for gene, hgvs in f.genetics),
            ";".join(f.phenotypes) if not (orpha or icd10) else "",
            "Yes" if "research-contact" in f.consent else "No",
            "Yes",
            "",
            "",
            "",
        )
        rows.append({k: _safe(v) for k, v in zip(CDE_COLUMNS, values, strict=True)})
    return rows


def registry_csv(facts: Sequence[CaseFacts]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CDE_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(registry_rows(facts))
    return out.getvalue()
