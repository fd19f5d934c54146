"""HGVS variant descriptions: the syntax check accepts the nomenclature's forms, refuses others.

Examples are from the HGVS Nomenclature recommendations (hgvs-nomenclature.org).
Refusals must never quote the input: a variant is patient data.
"""

from __future__ import annotations

import time

import pytest

from cpms_hub.domain.errors import ValidationError
from cpms_hub.vocab import check_hgvs

VALID = [
    "NM_000051.4:c.7630-2A>C",
    "NC_000011.10:g.108227800del",
    "NP_000042.3:p.(Arg3008Cys)",
    "NP_000042.3:p.Arg3008Cys",
    "NP_000042.3:p.R3008C",
    "NM_004006.2(DMD):c.4375C>T",
    "NC_000023.11(NM_004006.2):c.4375C>T",
    "NM_004006.2:c.*32A>G",
    "NM_004006.2:c.-128_-126[79]",
    "NM_004006.2:c.1210-12T[7]",
    "NC_000014.8:g.123_191CAG[19]CAA[4]",
    "NM_004006.2:c.5697_5698insA",
    "NM_004006.2:c.5697_5698ins[NC_000002.11:g.222_333]",
    "NM_004006.2:c.6775_6777delinsC",
    "NM_004006.2:c.4072-1234_5155-246del",
    "NM_004006.2:c.(4071+1_4072-1)_(5154+1_5155-1)del",
    "NC_000001.11:g.(?_123)_(456_?)dup",
    "NM_004006.2:c.20dup",
    "NM_004006.2:c.5657_5660inv",
    "NM_004006.2:c.[2376G>C;3103del]",
    "NM_004006.2:c.[2376G>C];[3103del]",
    "NM_004006.2:c.[2376G>C](;)[3103del]",
    "NM_004006.2:c.[296T>G];[=]",
    "NM_004006.2:c.=",
    "NM_004006.2:r.76a>c",
    "NM_004006.2:r.spl",
    "NP_003997.1:p.Trp24Ter",
    "NP_003997.1:p.Trp24*",
    "NP_003997.1:p.Cys188=",
    "NP_003997.1:p.Met1?",
    "NP_003997.1:p.0",
    "NP_003997.1:p.Lys2_Gly3insGlnSerLys",
    "NP_003997.1:p.Cys28delinsTrpVal",
    "NP_003997.1:p.Arg97ProfsTer23",
    "NP_003997.1:p.Met1ext-5",
    "NP_003997.1:p.*110Glnext*17",
    "NP_003997.1:p.Ala2[10]",
    "NP_003997.1:p.[Ser68Arg;Asn594del]",
    "NC_012920.1:m.8993T>G",
    "LRG_199t1:c.54G>A",
    "ENST00000357033.9:c.4375C>T",
    "ENSP00000354587.3:p.Trp24Cys",
]


@pytest.mark.parametrize("text", VALID)
def test_valid_descriptions_are_accepted_unchanged(text: str) -> None:
    assert check_hgvs(text) == text


def test_normalises_white_space_and_case_of_the_reference() -> None:
    assert check_hgvs("  nm_000051.4:C.7630-2A>C\n") == "NM_000051.4:c.7630-2A>C"
    assert check_hgvs("lrg_199T1:c.54G>A") == "LRG_199t1:c.54G>A"


INVALID = {
    "c.123A>": "reference sequence",
    "NM_000051.4:c.ABC": "does not follow HGVS syntax",
    "NM_000051.4:c.123A>": "does not follow HGVS syntax",
    "NM_000051:c.7630-2A>C": "needs its version",
    "NM_000051.4:c.7630-2a>c": "does not follow HGVS syntax",  # lower case is RNA
    "NM_000051.4:p.Arg3008Cys": "protein reference",
    "NC_000011.10:c.123A>G": "transcript reference",
    "NM_000051.4:g.123A>G": "genomic reference",
    "NM_000051.4:x.123A>G": "coordinate type",
    "NM_000051.4:c.123insA": "does not follow HGVS syntax",  # an insertion needs two positions
    "NM_000051.4:c.": "is missing",
    "NM_000051.4:c.123A>G extra": "spaces",
    "ATM:c.123A>G": "RefSeq, Ensembl or LRG",
    "NM_000051.4:c.[123A>G": "does not follow HGVS syntax",
    "NP_000042.3:p.Foo12Bar": "does not follow HGVS syntax",
    "": "empty",
    "N" * 400: "longer than 300",
}


@pytest.mark.parametrize(("text", "why"), INVALID.items(), ids=lambda v: str(v)[:30])
def test_malformed_descriptions_are_refused_without_echo(text: str, why: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_hgvs(text)
    err = caught.value
    assert err.field == "genetics.hgvs"
    assert err.reason.startswith("is not a valid HGVS variant description: ")
    assert why in err.reason
    if text:
        assert text not in str(err)
    assert "ABC" not in str(err) and "Foo12Bar" not in str(err)


def test_refuses_what_is_not_text() -> None:
    with pytest.raises(ValidationError):
        check_hgvs(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "NM_000051.4:c." + "1_" * 140 + "x",
        "NP_000042.3:p." + "Ala" * 95 + "x",
        "NM_000051.4:c.[" + "1A>G;" * 55 + "x]",
        "NC_000014.8:g.123_191" + "CAG[1]" * 45 + "x",
        "NM_000051.4:c.1" + "(" * 280,
    ],
    ids=["positions", "amino-acids", "allele", "repeats", "parentheses"],
)
def test_long_malformed_input_is_refused_quickly(text: str) -> None:
    # regular expressions can backtrack catastrophically; these must stay instant
    start = time.perf_counter()
    with pytest.raises(ValidationError):
        check_hgvs(text)
    assert time.perf_counter() - start < 0.05
