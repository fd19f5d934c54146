"""HGVS variant descriptions: a syntax check against the HGVS Nomenclature grammar.

Standard: HGVS Nomenclature (den Dunnen et al., Hum Mutat 2016;
https://hgvs-nomenclature.org, formerly varnomen.hgvs.org), the form in which
labs report variants: ``<reference>:<type>.<change>``, e.g.
``NM_000051.4:c.7630-2A>C``, ``NC_000011.10:g.108227800del``,
``NP_000042.3:p.(Arg3008Cys)``.

Why a grammar of our own and not biocommons ``hgvs``: its offline parser is
exactly what we need, but the package cannot be installed cleanly beside this
project. Its current release (1.5.7) requires ``biocommons.seqrepo``, which pins
``ipython~=8.4`` while JupyterLab here runs IPython 9; the last release that
resolves (1.5.4) pulls in ``psycopg2`` as a source tarball (a C build against
libpq on every clean machine), plus ``pysam``, ``pyppeteer`` and
``requests-html``, none of which a parser uses. ``hgvs-weaver`` (Rust) is new,
undocumented, installs a module called ``weaver`` and needs ``maturin`` at run
time. So this module checks the *syntax* with regular expressions built from
the nomenclature's own grammar, and says so.

What is checked:

- the reference is a versioned RefSeq (``NM_``, ``NR_``, ``NC_``, ``NG_``,
  ``NT_``, ``NW_``, ``NP_``, ``XM_``, ``XR_``, ``XP_``, ``YP_``, ``AC_``),
  Ensembl (``ENST…``/``ENSP…`` with version) or LRG accession, optionally with
  a transcript or gene symbol in parentheses (``NC_000011.10(NM_000051.4)``,
  ``NM_000051.4(ATM)``);
- the coordinate type (``g. m. o. c. n. r. p.``) fits that reference
  (``p.`` needs a protein, ``c.``/``r.`` a transcript, ``g.`` a genomic one);
- the change is a substitution, deletion, duplication, insertion, deletion-
  insertion, inversion, conversion, repeat or "no change" (``=``/``?``) with
  the positions of that coordinate type (intronic offsets, ``-``/``*`` for
  UTRs, uncertain ``(a_b)`` ranges), or an allele ``[a;b]``/``[a];[b]``;
  proteins with one- or three-letter amino acids, frameshifts and extensions.

What is not: whether the reference exists, whether the stated reference base
is the one at that position, or whether a description is the *preferred*
(3'-shifted) one. Those need the sequences, which cannot be fetched here.
Legacy ``delAGinsT`` is tolerated; lower-case DNA bases are not (lower case
means RNA in HGVS).

Messages never quote the input: a variant is patient data.
"""

from __future__ import annotations

import re

from cpms_hub.domain.errors import ValidationError

__all__ = ["check_hgvs", "MAX_HGVS_LENGTH"]

_FIELD = "genetics.hgvs"
_PREFIX = "is not a valid HGVS variant description: "
MAX_HGVS_LENGTH = 300

# ---- references -------------------------------------------------------------------------

_REFSEQ = r"(?:N[CGMPRTW]|X[MPR]|YP|AC)_\d+"
_ENSEMBL = r"ENS(?:[A-Z]{3})?[TP]\d{11}"
_ACCESSION = re.compile(
    rf"(?P<refseq>{_REFSEQ})(?P<rsv>\.\d+)?|(?P<ens>{_ENSEMBL})(?P<ensv>\.\d+)?"
    r"|(?P<lrg>LRG_\d+(?:[tp]\d+)?)",
    re.IGNORECASE,
)
_GENE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*(?:_[vi]\d+)?")  # Mutalyzer adds _v001/_i001

_PROTEIN, _TRANSCRIPT, _NONCODING, _GENOMIC = "protein", "transcript", "noncoding", "genomic"
_FITS = {
    _PROTEIN: "p",
    _TRANSCRIPT: "cnr",
    _NONCODING: "nr",
    _GENOMIC: "gmo",
}
_NEEDS = {
    "p": "p. needs a protein reference such as NP_000042.3",
    "c": "c. needs a coding transcript reference such as NM_000051.4",
    "r": "r. needs a transcript reference such as NM_000051.4",
    "n": "n. needs a transcript reference such as NR_046018.2",
    "g": "g. needs a genomic reference such as NC_000011.10",
    "m": "m. needs a genomic (mitochondrial) reference such as NC_012920.1",
    "o": "o. needs a genomic (circular) reference",
}


def _kind(accession: str) -> str:
    a = accession.upper()
    if a.startswith("ENS"):
        # ENST… / ENSP… (or ENSMUST… for other species): the letter before the 11 digits
        return _PROTEIN if a.split(".")[0][-12] == "P" else _TRANSCRIPT
    if a.startswith("LRG_"):
        return _PROTEIN if "P" in a[4:] else _TRANSCRIPT if "T" in a[4:] else _GENOMIC
    if a.startswith(("NP_", "XP_", "YP_")):
        return _PROTEIN
    if a.startswith(("NM_", "XM_")):
        return _TRANSCRIPT
    if a.startswith(("NR_", "XR_")):
        return _NONCODING
    return _GENOMIC


def _normal_accession(accession: str) -> str:
    if accession.upper().startswith("LRG_"):
        return "LRG_" + accession[4:].lower()
    return accession.upper()


def _accession(text: str) -> tuple[str | None, str]:
    """(normalised accession, "") or (None, reason)."""
    m = _ACCESSION.fullmatch(text)
    if m is None:
        return None, "the reference is not a RefSeq, Ensembl or LRG accession (e.g. NM_000051.4)"
    if (m["refseq"] and not m["rsv"]) or (m["ens"] and not m["ensv"]):
        return None, "the reference sequence needs its version, e.g. NM_000051.4"
    return _normal_accession(text), ""


# ---- the change ------------------------------------------------------------------------

_COUNT = r"(?:\d+|\(\d+_\d+\)|\?)"


def _nucleic(pos: str, nt: str, extra: str = "") -> re.Pattern[str]:
    """One change on DNA or RNA: positions ``pos``, bases ``nt``."""
    point = rf"(?:{pos}|\({pos}_{pos}\))"
    span = rf"{point}(?:_{point})?"
    between = rf"(?:{point}_{point}|\({pos}_{pos}\))"  # an insertion sits between two bases
    seq = rf"{nt}+"
    ref = r"(?:[A-Z]{2}_\d+\.\d+|ENS[A-Z]*\d{11}\.\d+|LRG_\d+[tp]?\d*)"
    inserted = (
        rf"(?:{seq}(?:\[\d+\])?|\(\d+(?:_\d+)?\)|{span}(?:inv)?"
        rf"|\[?{ref}:[cgmnor]\.\d+_\d+(?:inv)?\]?)"
    )
    edits = [
        rf"{pos}{nt}>{nt}",  # substitution
        rf"(?:{span}{nt}*)?=",  # no change
        rf"{span}del{nt}*",  # deletion (the deleted bases may be named)
        rf"{span}dup{nt}*",
        rf"{span}inv(?:{seq}|\d+)?",
        rf"{between}ins{inserted}",
        rf"{span}del{nt}*ins{inserted}",  # delins, and the legacy delAGinsT
        rf"{span}con(?:{ref}:[cgmnor]\.)?{span}",  # conversion (deprecated, still reported)
        rf"{span}(?:{nt}*\[{_COUNT}\])+",  # repeated sequence, e.g. CAG[23] or T[7]
        r"\?",
        *([extra] if extra else []),
    ]
    one = "|".join(edits)
    return re.compile(rf"(?:{one})|\((?:{one})\)")


_AA3 = (
    "Ala|Arg|Asn|Asp|Cys|Gln|Glu|Gly|His|Ile|Leu|Lys|Met|Phe|Pro|Ser|Thr|Trp|Tyr|Val"
    "|Sec|Pyl|Ter|Xaa"
)
_AA = rf"(?:{_AA3}|[ACDEFGHIKLMNPQRSTVWYUOX]|\*)"


def _protein() -> re.Pattern[str]:
    pos = rf"{_AA}\d+"
    span = rf"{pos}(?:_{pos})?"
    unknown_run = r"(?:Xaa|X)\[\d+\]"
    stop = r"(?:Ter|\*)"
    edits = [
        rf"{pos}(?:{_AA}|=|\?)",  # substitution, silent, unknown (Met1?)
        rf"{span}del",
        rf"{span}dup",
        rf"{pos}_{pos}ins(?:{_AA}+|\d+|\(\d+\)|{unknown_run})",
        rf"{span}delins(?:{_AA}+|{unknown_run})",
        rf"{pos}{_AA}?fs(?:{stop}(?:\d+|\?))?",  # frameshift
        rf"{pos}{_AA}?ext(?:-\d+|{stop}(?:\d+|\?)|\?)?",  # extension
        rf"{span}\[{_COUNT}\]",  # repeat
        r"=|\?|0\??",  # no change, unknown, no protein
    ]
    one = "|".join(edits)
    return re.compile(rf"(?:{one})|\((?:{one})\)")


_CPOS = r"(?:[-*]?\d+(?:[-+](?:\d+|\?))?|\?)"  # c. n. r.: UTR -/* and intronic offsets
_GPOS = r"(?:\d+|\?)"
_DNA = "[ACGTBDHKMNRSVWY]"
_RNA = "[acgubdhkmnrsvwy]"
_GENOMIC_CHANGE = _nucleic(_GPOS, _DNA)
_CHANGE = {
    "g": _GENOMIC_CHANGE,
    "m": _GENOMIC_CHANGE,
    "o": _GENOMIC_CHANGE,
    "c": _nucleic(_CPOS, _DNA),
    "n": _nucleic(_CPOS, _DNA),
    "r": _nucleic(_CPOS, _RNA, extra=r"0|spl\??|\(\?\)"),
    "p": _protein(),
}


def _split_top(text: str, seps: str) -> list[str] | None:
    """Split on any of ``seps`` outside brackets and parentheses (None if unbalanced)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            if depth < 0:
                return None
        elif depth == 0 and ch in seps:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]] if depth == 0 else None


def _change_ok(kind: str, change: str) -> bool:
    pattern = _CHANGE[kind]
    if not change.startswith("["):
        return pattern.fullmatch(change) is not None
    # an allele: [a;b] (cis), [a];[b] (trans), (;) for unknown phase, / and // for mosaics
    flat = change.replace("(;)", ";").replace("//", "/")
    groups = _split_top(flat, ";")
    if not groups:
        return False
    for group in groups:
        if len(group) < 3 or group[0] != "[" or group[-1] != "]":
            return False
        items = _split_top(group[1:-1], ";/")
        if not items or not all(pattern.fullmatch(i) or i == "0" for i in items):
            return False
    return True


def _fail(reason: str) -> ValidationError:
    return ValidationError(_FIELD, _PREFIX + reason)


def check_hgvs(text: str) -> str:
    """The description, normalised, if its syntax is HGVS; ValidationError otherwise.

    Normalising trims surrounding white space and writes the accession and the
    coordinate type in their canonical case (``nm_000051.4:C.`` becomes
    ``NM_000051.4:c.``); the change itself is never rewritten.
    """
    if not isinstance(text, str):
        raise _fail("it must be text")
    text = text.strip()
    if not text:
        raise _fail("it is empty")
    if len(text) > MAX_HGVS_LENGTH:
        raise _fail(f"it is longer than {MAX_HGVS_LENGTH} characters")
    if any(c.isspace() for c in text):
        raise _fail("it must not contain spaces")
    reference, colon, rest = text.partition(":")
    if not colon:
        raise _fail("it must start with the reference sequence, e.g. NM_000051.4:c.…")

    outer, paren, inner = reference, "", ""
    if reference.endswith(")") and "(" in reference:
        outer, _, inner = reference[:-1].partition("(")
    normal, reason = _accession(outer)
    if normal is None:
        raise _fail(reason)
    effective = normal
    if inner:
        if _ACCESSION.fullmatch(inner):
            inner_normal, reason = _accession(inner)
            if inner_normal is None:
                raise _fail(reason)
            paren, effective = f"({inner_normal})", inner_normal
        elif _GENE.fullmatch(inner):
            paren = f"({inner})"
        else:
            raise _fail("the part in parentheses must be a transcript or a gene symbol")

    if len(rest) < 2 or rest[1] != "." or rest[0].lower() not in _CHANGE:
        raise _fail("the coordinate type (c., g., m., n., o., p. or r.) must follow the ':'")
    kind, change = rest[0].lower(), rest[2:]
    if kind not in _FITS[_kind(effective)]:
        raise _fail(_NEEDS[kind])
    if not change:
        raise _fail(f"the change after {kind}. is missing")
    if not _change_ok(kind, change):
        raise _fail(f"the change after {kind}. does not follow HGVS syntax")
    return f"{normal}{paren}:{kind}.{change}"
