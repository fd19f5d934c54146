"""Phenotype similarity search: which cases look like this set of HPO terms?

The measure is the one ``pyhpo`` computes with
``HPOSet.similarity(other, kind="orpha", method="resnik", combine="funSimAvg")``:

- term to term, Resnik (IJCAI 1995): the information content of the most
  informative common ancestor (each term counts as its own ancestor), IC over
  Orphanet's annotated diseases (:mod:`cpms_hub.vocab.annotations`);
- set to set, funSimAvg (Schlicker et al., BMC Bioinformatics 2006): the mean,
  over the query's terms, of the best match in the case, and the mean, over
  the case's terms, of the best match in the query, averaged.

``pyhpo`` compares two sets term by term in Python; against 100,000 cases that
is minutes. :class:`PhenotypeIndex` gives the same numbers in milliseconds:

- for a query term ``q``, the score it reaches against *every* HPO term at once
  is one vector: walk ``q``'s ancestors by increasing IC and paint each one's
  IC over its descendants (precomputed index arrays), so each term keeps the
  IC of its most informative common ancestor with ``q``;
- the cases' terms are one flat array with offsets (CSR); gathering the
  vector at those positions and taking ``np.maximum.reduceat`` gives every
  case's best match for ``q``; the other direction is the column maximum of
  the query's vectors, gathered and averaged per case the same way;
- the top hits come from ``np.argpartition``; only they get an explanation:
  for each query term, the case term it matched best and their most
  informative common ancestor.

The scan is exact (no candidate is skipped), so its answers are the naive
pairwise ones; ``benchmarks/analysis.py`` checks them against ``pyhpo`` and
reports the speed-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cpms_hub.domain.errors import ValidationError
from cpms_hub.vocab import hpo
from cpms_hub.vocab._index import Lazy
from cpms_hub.vocab.annotations import orpha_annotations
from cpms_hub.vocab.hpo import ROOT

__all__ = ["TermSpace", "PhenotypeIndex", "SimilarHit", "Shared", "term_space"]


class TermSpace:
    """Every current HPO term numbered, with its IC and its descendants (self included)."""

    def __init__(self) -> None:
        index = hpo()
        ic_of = orpha_annotations().information_content
        ids = [ROOT, *(t.id for t in index.terms())]
        self.ids = ids
        self.number = {t: i for i, t in enumerate(ids)}
        self.ic = np.array([ic_of(t) for t in ids], dtype=np.float64)
        down: list[list[int]] = [[i] for i in range(len(ids))]
        self.up: list[np.ndarray] = []
        for i, t in enumerate(ids):
            above = [self.number[a] for a in index.ancestors(t) if a in self.number] if i else []
            for a in above:
                down[a].append(i)
            self.up.append(np.array([i, *above], dtype=np.int32))
        self.down = [np.array(d, dtype=np.int32) for d in down]
        # ancestors by increasing IC: painting in that order leaves the maximum on top
        self.up_by_ic = [u[np.argsort(self.ic[u], kind="stable")] for u in self.up]

    def __len__(self) -> int:
        return len(self.ids)

    def check(self, terms: Sequence[str], field: str = "hpo_terms") -> list[int]:
        if not isinstance(terms, list | tuple) or not terms:
            raise ValidationError(field, "must be a non-empty list of HPO ids")
        if len(terms) > 100:
            raise ValidationError(field, "at most 100 terms")
        out = []
        for t in terms:
            n = self.number.get(t) if isinstance(t, str) else None
            if n is None:
                raise ValidationError(
                    field,
                    f"{t if isinstance(t, str) and len(t) < 20 else 'a term'}"
                    " is not a current HPO term",
                )
            out.append(n)
        return list(dict.fromkeys(out))

    def scores_against_all(self, q: int) -> np.ndarray:
        """Resnik similarity of term ``q`` with every term."""
        row = np.zeros(len(self.ids), dtype=np.float64)
        for a in self.up_by_ic[q]:
            row[self.down[a]] = self.ic[a]
        return row

    def mica(self, a: int, b: int) -> int:
        """The most informative common ancestor of two terms (the lowest number on a tie)."""
        common = np.intersect1d(self.up[a], self.up[b])
        return int(common[np.argmax(self.ic[common])])


#: built on first use (a few seconds: ~19,000 terms and their closures)
term_space: Lazy[TermSpace] = Lazy(TermSpace)


@dataclass(frozen=True, slots=True)
class Shared:
    """Why a query term scored: the case term it matched and their common ancestor."""

    query: str
    matched: str
    ancestor: str
    ic: float


@dataclass(frozen=True, slots=True)
class SimilarHit:
    position: int
    score: float
    shared: tuple[Shared, ...]


class PhenotypeIndex:
    """The phenotype sets of a population of cases, for funSimAvg-Resnik top-k search."""

    def __init__(self, phenotype_sets: Sequence[Sequence[str]], space: TermSpace | None = None):
        self.space = space or term_space()
        number = self.space.number
        flat: list[int] = []
        offsets = [0]
        #: position in ``phenotype_sets`` of each indexed case (cases without known terms skip)
        positions: list[int] = []
        for pos, terms in enumerate(phenotype_sets):
            nums = list(dict.fromkeys(number[t] for t in terms if t in number))
            if not nums:
                continue
            flat.extend(nums)
            offsets.append(len(flat))
            positions.append(pos)
        self.terms = np.array(flat, dtype=np.int32)
        self.offsets = np.array(offsets, dtype=np.int64)
        self.lengths = np.diff(self.offsets)
        self.positions = np.array(positions, dtype=np.int64)
        self._carriers: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.positions)

    def _rows(self, query: Sequence[str]) -> tuple[list[int], np.ndarray]:
        qs = self.space.check(query)
        return qs, np.vstack([self.space.scores_against_all(q) for q in qs])

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        if not len(self):
            return np.zeros(0)
        starts = self.offsets[:-1]
        best_for_query = np.zeros(len(self))
        for row in rows:
            best_for_query += np.maximum.reduceat(row[self.terms], starts)
        best_for_query /= len(rows)
        best_for_case = np.add.reduceat(rows.max(axis=0)[self.terms], starts) / self.lengths
        return (best_for_query + best_for_case) / 2

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """funSimAvg of the query against every indexed case (in index order)."""
        return self._scores(self._rows(query)[1])

    def top(self, query: Sequence[str], n: int = 10, allowed: np.ndarray | None = None):  # noqa: ANN201
        """The ``n`` best hits (positions in the input sets), best first, with explanations.

        ``allowed``: a boolean mask over the input positions; others never come back.
        """
        qs, rows = self._rows(query)
        scores = self._scores(rows)
        if allowed is not None and len(scores):
            scores = np.where(allowed[self.positions], scores, -np.inf)
        n = min(n, int(np.isfinite(scores).sum()))
        if n <= 0:
            return []
        part = np.argpartition(-scores, n - 1)[:n]
        # best first; equal scores in population order, so the answer is stable
        part = part[np.lexsort((part, -scores[part]))]
        return [self._explain(int(i), float(scores[i]), qs, rows) for i in part]

    def _explain(self, i: int, score: float, qs: list[int], rows: np.ndarray) -> SimilarHit:
        sp = self.space
        case_terms = self.terms[self.offsets[i] : self.offsets[i + 1]]
        shared = []
        for q, full in zip(qs, rows, strict=True):
            row = full[case_terms]
            j = int(np.argmax(row))
            if row[j] <= 0:
                continue
            m = int(case_terms[j])
            a = sp.mica(q, m)
            shared.append(Shared(sp.ids[q], sp.ids[m], sp.ids[a], round(float(sp.ic[a]), 4)))
        return SimilarHit(int(self.positions[i]), round(score, 6), tuple(shared))

    def carriers(self, term: str) -> int:
        """How many indexed cases carry ``term`` or a term below it (remembered per term)."""
        found = self._carriers.get(term)
        if found is None:
            n = self.space.number.get(term)
            if n is None or not len(self):
                return 0
            below = np.zeros(len(self.space), dtype=np.int8)
            below[self.space.down[n]] = 1
            found = int(np.maximum.reduceat(below[self.terms], self.offsets[:-1]).sum())
            self._carriers[term] = found
        return found
