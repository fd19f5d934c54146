"""Vocabulary routes of the store API: find and check HPO, Orphanet, ICD-10 and HGVS codes.

The case editor calls these as the clinician types. They read only the
vocabularies :mod:`cpms_hub.vocab` ships (public reference data: no case is
touched and nothing is audited), but every route still needs an
authenticated account, like the rest of the API.

Search text travels in POST bodies, never in URLs: what a clinician types
while describing a patient ("seizures since 3 months", a variant) is patient
data, and URLs end up in access logs, proxies and browser history. Only a
bare HPO id appears in a path (``GET /vocab/hpo/{hpo_id}``), as a code of a
public ontology. Error messages never quote what was typed.

Standards: HPO (https://hpo.jax.org), Orphanet ORPHAcodes
(https://www.orpha.net), WHO ICD-10 (2019), HGVS Nomenclature
(https://hgvs-nomenclature.org). See :mod:`cpms_hub.vocab` for the sources.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from cpms_hub import vocab
from cpms_hub.domain.errors import ValidationError

from .app import ActorDep
from .models import ErrorOut

__all__ = [
    "vocab_router",
    "VOCAB_ROUTES",
    "SearchIn",
    "HgvsIn",
    "HpoHitOut",
    "HpoTermOut",
    "CodeOut",
    "HgvsOut",
]

#: the routes below, as (method, path under the API root), for ROUTES_DOC
VOCAB_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/vocab/hpo/search"),
    ("GET", "/vocab/hpo/{hpo_id}"),
    ("POST", "/vocab/orpha/search"),
    ("POST", "/vocab/icd10/search"),
    ("POST", "/vocab/hgvs/check"),
)

_ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 403, 404, 413, 422)}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchIn(_In):
    """What was typed, and how many results the picker shows."""

    q: str = Field(min_length=1, max_length=100)
    limit: int = Field(default=20, ge=1, le=50)


class HgvsIn(_In):
    # longer than any valid description, so the check (not pydantic) says what is wrong
    hgvs: str = Field(min_length=1, max_length=1000)


class HpoHitOut(BaseModel):
    id: str
    label: str
    #: the label or synonym the text matched (or the id, when an id was typed)
    matched: str
    synonyms: list[str]


class HpoTermOut(BaseModel):
    id: str
    label: str
    synonyms: list[str]
    obsolete: bool
    replaced_by: str | None
    consider: list[str]
    parents: list[str]


class CodeOut(BaseModel):
    code: str
    label: str


class HgvsOut(BaseModel):
    valid: bool
    normalised: str | None = None
    reason: str | None = None


def vocab_router(api_root: str) -> APIRouter:
    """The vocabulary routes, mounted under ``api_root`` (e.g. ``/services/cpms-store/api/v1``)."""
    router = APIRouter(prefix=api_root + "/vocab", responses=_ERRORS, tags=["vocabularies"])

    @router.post("/hpo/search", response_model=list[HpoHitOut])
    def hpo_search(body: SearchIn, actor: ActorDep) -> list[dict]:
        """Current HPO terms whose label or a synonym starts words with the text; ids work too."""
        return [
            {
                "id": h.term.id,
                "label": h.term.label,
                "matched": h.matched,
                "synonyms": list(h.term.synonyms),
            }
            for h in vocab.hpo().search(body.q, body.limit)
        ]

    @router.get("/hpo/{hpo_id}", response_model=HpoTermOut)
    def hpo_term(hpo_id: Annotated[str, Path(pattern=r"^HP:\d{7}$")], actor: ActorDep) -> dict:
        """One term, obsolete ones included (with what replaces them)."""
        t = vocab.hpo().get(hpo_id)
        return {
            "id": t.id,
            "label": t.label,
            "synonyms": list(t.synonyms),
            "obsolete": t.obsolete,
            "replaced_by": t.replaced_by,
            "consider": list(t.consider),
            "parents": list(t.parents),
        }

    @router.post("/orpha/search", response_model=list[CodeOut])
    def orpha_search(body: SearchIn, actor: ActorDep) -> list[dict]:
        """Orphanet diseases (those with HPO annotations) by name or ORPHA code."""
        return [
            {"code": h.term.code, "label": h.term.label}
            for h in vocab.orpha().search(body.q, body.limit)
        ]

    @router.post("/icd10/search", response_model=list[CodeOut])
    def icd10_search(body: SearchIn, actor: ActorDep) -> list[dict]:
        """WHO ICD-10 categories and subcategories by description or by the start of a code."""
        return [
            {"code": h.term.code, "label": h.term.label}
            for h in vocab.search_icd10(body.q, body.limit)
        ]

    @router.post("/hgvs/check", response_model=HgvsOut, response_model_exclude_none=True)
    def hgvs_check(body: HgvsIn, actor: ActorDep) -> dict:
        """Whether the text is an HGVS variant description (syntax only), and why not."""
        try:
            return {"valid": True, "normalised": vocab.check_hgvs(body.hgvs)}
        except ValidationError as exc:
            return {"valid": False, "reason": exc.reason}

    return router
