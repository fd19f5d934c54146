"""Generated populations of case facts for the analysis tests and the benchmark.

Phenotypes are drawn from the HPO annotations of real Orphanet diseases
(so that similarity and generalisation meet realistic term sets); every
other attribute is drawn at random. ``rare`` cases are made unique on
purpose: a rare disease, an unusual country, an extreme age. Seven in ten
signed outcomes have a follow-up (treatment category and result).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from cpms_hub.domain import CaseStatus
from cpms_hub.domain.analysis import CaseFacts
from cpms_hub.domain.followup import FollowUpResult, TreatmentCategory
from cpms_hub.vocab import hpo
from cpms_hub.vocab.annotations import orpha_annotations

COUNTRIES = ["FR", "DE", "PL", "IT", "ES", "NL", "BE", "SE", "PT", "CZ", "IE", "GR"]
RARE_COUNTRIES = ["IS", "MT", "LI", "NA", "FJ", "MN"]
NETWORKS = ["ERN-ITHACA", "ERN-RND", "ERN-EYE", "ERN-SKIN"]
START = datetime(2019, 1, 1, tzinfo=UTC)
#: treatment categories as often as a network might see them (most are medicinal)
TREATMENTS = [t.value for t in TreatmentCategory]
TREATMENT_WEIGHTS = [40, 5, 10, 8, 20, 15, 2]
RESULTS = [r.value for r in FollowUpResult]
RESULT_WEIGHTS = [35, 35, 15, 3, 12]


def disease_terms() -> dict[str, list[str]]:
    """ORPHA code -> its annotated current HPO terms (diseases with at least 3)."""
    ann = orpha_annotations()
    index = hpo()
    found = {}
    for code in sorted(ann._terms):
        terms = sorted({t for t in ann.terms(code) if t in index and not index.get(t).obsolete})
        if len(terms) >= 3:
            found[code] = terms
    return found


def make_facts(
    n: int, *, seed: int = 0, rare: float = 0.0, diseases: dict[str, list[str]] | None = None
) -> list[CaseFacts]:
    rng = random.Random(seed)
    # follow-ups drawn from a generator of their own: the rest stays as it always was
    later = random.Random(seed * 7919 + 1)
    diseases = diseases or disease_terms()
    codes = list(diseases)
    common = codes[:40]
    out = []
    for i in range(n):
        is_rare = rng.random() < rare
        code = rng.choice(codes) if is_rare else rng.choice(common)
        terms = diseases[code]
        submitted = START + timedelta(days=rng.randrange(6 * 365))
        outcome = submitted + timedelta(days=rng.randrange(7, 200)) if rng.random() < 0.6 else None
        followed = later.random() < 0.7
        treatment = later.choices(TREATMENTS, TREATMENT_WEIGHTS)[0]
        result = later.choices(RESULTS, RESULT_WEIGHTS)[0]
        out.append(
            CaseFacts(
                id=f"case-{seed}-{i}",
                network=rng.choice(NETWORKS),
                status=CaseStatus.OUTCOME_SIGNED if outcome else CaseStatus.SUBMITTED,
                created_at=submitted - timedelta(days=3),
                submitted_at=submitted,
                outcome_at=outcome,
                sex=rng.choice(["female", "male", "male", "female", "unknown"]),
                birth_year=rng.randrange(1920, 2024) if is_rare else rng.randrange(1960, 2020),
                age_at_onset_years=rng.randrange(0, 40) if rng.random() < 0.8 else None,
                country=rng.choice(RARE_COUNTRIES if is_rare else COUNTRIES),
                phenotypes=tuple(rng.sample(terms, min(len(terms), rng.randrange(2, 9)))),
                orpha=(code,),
                confirmed=(code,) if rng.random() < 0.5 else (),
                urgency=rng.choice(["routine", "routine", "urgent"]),
                consent=frozenset({"panel-discussion", "registries"}),
                treatment=treatment if outcome and followed else None,
                followup=result if outcome and followed else None,
            )
        )
    return out
