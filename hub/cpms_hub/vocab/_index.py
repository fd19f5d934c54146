"""The search machinery shared by the vocabularies: folding, a word-prefix index, lazy loading.

A clinician types a few letters of a word ("seiz", "epilep", "abn hea") and
expects the term to appear at once. Every vocabulary here is small (at most
~40,000 names), so the index is an in-memory inverted index built once:

- every name (a label or a synonym) is *folded* (Unicode NFKD, accents
  dropped, case-folded) and cut into words of letters and digits;
- a postings map sends each distinct word to the names containing it, and the
  distinct words are kept sorted, so "every word starting with ``epilep``" is
  one :func:`bisect.bisect_left` and a contiguous slice;
- a query matches a name when each of its words is a prefix of some word of
  the name; the candidates are the intersection, over the query's words, of
  the unions of those postings (smallest first).

Ranking, best first (the number is the integer part of :attr:`SearchHit.score`):

====  ==========================================================
 6    the query is the code itself (``HP:0001250``, ``1250``)
 5    the label equals the query
 4    a synonym equals the query
 3    the label starts with the query
 2    a synonym starts with the query
 1    every query word starts a word of the label
 0    every query word starts a word of a synonym
====  ==========================================================

A synonym that *starts with* what was typed ranks above a label that merely
contains the word further on: typing "epilep" should offer Seizure (synonym
"Epilepsy") before "Focal-onset epileptic seizure with ...". Within a level a
shorter name ranks first (the fraction of the name that was typed is the
fractional part of the score), because the shorter name is usually the more
general term a clinician starts from; the code breaks the remaining ties.
"""

from __future__ import annotations

import bisect
import heapq
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

__all__ = ["SearchHit", "NameIndex", "Lazy", "fold", "words"]

T = TypeVar("T")

_WORD = re.compile(r"[a-z0-9]+")

#: ranking levels (see the module docstring)
CODE, EXACT_LABEL, EXACT_SYNONYM, PREFIX_LABEL, PREFIX_SYNONYM, WORD_LABEL, WORD_SYNONYM = (
    6,
    5,
    4,
    3,
    2,
    1,
    0,
)


@dataclass(frozen=True, slots=True)
class SearchHit(Generic[T]):
    """One search result: the entry, the name that matched it, and how well."""

    term: T
    matched: str
    score: float


def fold(text: str) -> str:
    """Lower-case, accent-free text: "Sjögren" and "sjogren" fold alike."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> tuple[str, ...]:
    """The folded words of ``text`` (runs of ASCII letters and digits)."""
    return tuple(_WORD.findall(fold(text)))


class NameIndex:
    """A word-prefix index over named entries (entry numbers are the caller's).

    ``names`` yields ``(entry, name, is_label)``; several names may share an
    entry (a label and its synonyms). The index keeps only integers and the
    folded names, so the caller maps entry numbers back to its own objects.
    """

    def __init__(self, names: Iterable[tuple[int, str, bool]]) -> None:
        entry: list[int] = []
        shown: list[str] = []
        folded: list[str] = []
        is_label: list[bool] = []
        postings: dict[str, list[int]] = {}
        for number, name, label in names:
            ws = words(name)
            if not ws:
                continue
            nid = len(entry)
            entry.append(number)
            shown.append(name)
            folded.append(" ".join(ws))
            is_label.append(label)
            for w in set(ws):
                postings.setdefault(w, []).append(nid)
        self._entry = entry
        self._shown = shown
        self._folded = folded
        self._is_label = is_label
        self._words = sorted(postings)
        self._postings = [postings[w] for w in self._words]
        # keystrokes repeat prefixes ("s", "se", "sei", ...): remember recent unions
        self._prefix_union = lru_cache(maxsize=4096)(self._union_uncached)

    def __len__(self) -> int:
        return len(self._entry)

    def _union_uncached(self, prefix: str) -> frozenset[int]:
        lo = bisect.bisect_left(self._words, prefix)
        hi = bisect.bisect_left(self._words, prefix + "\U0010ffff", lo)
        if hi - lo == 1:
            return frozenset(self._postings[lo])
        return frozenset().union(*self._postings[lo:hi])

    def search(self, text: str, limit: int) -> list[tuple[int, str, float]]:
        """``(entry, matched name, score)`` of the best ``limit`` entries, best first."""
        qwords = words(text)
        if not qwords or limit <= 0:
            return []
        sets = sorted((self._prefix_union(w) for w in dict.fromkeys(qwords)), key=len)
        candidates = sets[0].intersection(*sets[1:]) if len(sets) > 1 else sets[0]
        query = " ".join(qwords)
        qlen = len(query)
        best: dict[int, tuple[float, int]] = {}
        folded, is_label, entry = self._folded, self._is_label, self._entry
        for nid in candidates:
            name = folded[nid]
            label = is_label[nid]
            if name == query:
                level = EXACT_LABEL if label else EXACT_SYNONYM
            elif name.startswith(query):
                level = PREFIX_LABEL if label else PREFIX_SYNONYM
            else:
                level = WORD_LABEL if label else WORD_SYNONYM
            # the fraction typed stays below 1 so it never lifts a name to the next level
            score = level + 0.99 * min(qlen / len(name), 1.0)
            e = entry[nid]
            kept = best.get(e)
            if kept is None or score > kept[0]:
                best[e] = (score, nid)
        # a partial sort: a short prefix can match thousands of entries, we show a few
        ranked = heapq.nsmallest(limit, best.items(), key=lambda kv: (-kv[1][0], kv[0]))
        return [(e, self._shown[nid], round(score, 4)) for e, (score, nid) in ranked]


class Lazy(Generic[T]):
    """Build a value once, on first use, even when several threads ask at once.

    The service warms the vocabularies up in a background thread while the
    first requests may already arrive; the lock makes those requests wait for
    the one load instead of starting their own.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._lock = threading.Lock()

    def __call__(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
                value = self._value
        return value

    @property
    def loaded(self) -> bool:
        return self._value is not None
