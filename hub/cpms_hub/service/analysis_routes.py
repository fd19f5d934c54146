"""Analysis routes: anonymised cohorts, reports, similar cases, the registry export.

All the work happens here, in the store service, never in the caller's
kernel: the store decrypts the consenting cases (:mod:`cpms_hub.store.analysis`),
:mod:`cpms_hub.analysis` anonymises or aggregates, and only the result
leaves. Who gets what:

- data scientists (``custom:cpms:cohorts:read``): ``POST /analysis/cohort``
  (k-anonymous rows, JSON or Parquet), ``POST /analysis/report`` (aggregates,
  small cells suppressed) and ``POST /analysis/similar`` over the anonymised
  population (no case id: hits are numbered per answer; shared terms are
  generalised until at least k cases carry them);
- clinicians, panel members and coordinators: ``POST /analysis/similar`` over
  the cases they may read, with case ids and the panel members who reviewed
  them (each hit audited as a read of that case);
- coordinators: ``GET /exports/registry.csv``, the EU RD Platform common data
  elements of their network's consenting cases.

Only cases whose patient's latest consent grants ``registries`` are studied
or exported. Every answer is audited with its parameters and the SHA-256 of
the bytes that left, which the answer also carries in ``X-CPMS-SHA256``.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from typing import Annotated

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from cpms_hub.analysis import PhenotypeIndex, anonymise, report
from cpms_hub.domain import MemberRole, Role
from cpms_hub.domain.analysis import (
    DEFAULT_K,
    DEFAULT_MAX_SUPPRESSION,
    MAX_SIMILAR,
    CaseFacts,
    CohortFormat,
    CohortRequest,
)
from cpms_hub.exports.registry import registry_csv
from cpms_hub.policy import Action, decide
from cpms_hub.state import State
from cpms_hub.store.analysis import AnalysisReader
from cpms_hub.vocab import hpo

from .app import ActorDep
from .case_access import audit_context, require
from .models import ErrorOut

__all__ = ["analysis_router", "ANALYSIS_ROUTES"]

ANALYSIS_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/analysis/cohort"),
    ("POST", "/analysis/report"),
    ("POST", "/analysis/similar"),
    ("GET", "/exports/registry.csv"),
)

_ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 403, 413, 422)}
_PRIVATE = {"Cache-Control": "private, no-store"}
PARQUET = "application/vnd.apache.parquet"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CohortIn(_In):
    k: int = DEFAULT_K
    fields: list[str] | None = None
    quasi_identifiers: list[str] | None = None
    max_suppression: float = DEFAULT_MAX_SUPPRESSION
    format: str = "json"


class ReportIn(_In):
    pass


class SimilarIn(_In):
    hpo_terms: list[str] = Field(min_length=1, max_length=100)
    top: Annotated[int, Field(ge=1, le=MAX_SIMILAR)] = 10


def _label(term: str) -> str:
    return hpo().get(term).label


class _IndexCache:
    """The last phenotype index built, reused while the population is unchanged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: int | None = None
        self._index: PhenotypeIndex | None = None

    def get(self, facts: list[CaseFacts]) -> PhenotypeIndex:
        key = hash(tuple((f.id, f.phenotypes) for f in facts))
        with self._lock:
            if key == self._key and self._index is not None:
                return self._index
        index = PhenotypeIndex([f.phenotypes for f in facts])
        with self._lock:
            self._key, self._index = key, index
        return index


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def analysis_router(api_root: str, state: State) -> APIRouter:
    router = APIRouter(prefix=api_root, responses=_ERRORS, tags=["analysis"])
    reader = AnalysisReader(state.cases)
    cohort_index = _IndexCache()

    def answer(body: bytes, media_type: str, headers: dict | None = None) -> Response:
        return Response(
            body,
            media_type=media_type,
            headers={**_PRIVATE, "X-CPMS-SHA256": _sha(body), **(headers or {})},
        )

    @router.post("/analysis/cohort")
    def cohort(body: CohortIn, request: Request, actor: ActorDep) -> Response:
        """A k-anonymous cohort of the consenting cases (JSON, or Parquet)."""
        ctx = audit_context(request, actor.name)
        require(state.cases, actor, Action.COHORT_READ, ctx)
        asked = CohortRequest(
            k=body.k,
            fields=tuple(body.fields) if body.fields is not None else None,
            quasi_identifiers=(
                tuple(body.quasi_identifiers) if body.quasi_identifiers is not None else None
            ),
            max_suppression=body.max_suppression,
            format=body.format,
        )
        result = anonymise(reader.consented(), asked)
        if asked.format is CohortFormat.PARQUET:
            table = pa.Table.from_pandas(result.frame(), preserve_index=False)
            table = table.replace_schema_metadata(
                {**(table.schema.metadata or {}), b"cpms.summary": json.dumps(result.summary)}
            )
            sink = io.BytesIO()
            pq.write_table(table, sink)
            payload, media = sink.getvalue(), PARQUET
        else:
            payload = orjson.dumps(
                {
                    "columns": list(result.columns),
                    # column by column: fewer bytes than row objects, and straight into pandas
                    "data": result.columns,
                    "summary": result.summary,
                },
                # what json.dumps would take too: numbers of numpy, keys that are not text
                option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
            )
            media = "application/json"
        detail = {
            "k": asked.k,
            "fields": list(asked.fields or ()),
            "quasi_identifiers": list(asked.quasi_identifiers or ()),
            "max_suppression": asked.max_suppression,
            "format": asked.format.value,
            "rows": result.size,
            "suppressed": result.summary["cases_suppressed"],
            "sha256": _sha(payload),
        }
        reader.record(ctx, "cohort.export", detail)
        return answer(
            payload,
            media,
            {"X-CPMS-Cohort-Summary": json.dumps(result.summary, separators=(",", ":"))}
            if media == PARQUET
            else None,
        )

    @router.post("/analysis/report")
    def aggregate(request: Request, actor: ActorDep, body: ReportIn | None = None) -> Response:
        """Counts, time to outcome and outcomes by treatment; cells below 5 suppressed."""
        ctx = audit_context(request, actor.name)
        require(state.cases, actor, Action.COHORT_REPORT, ctx)
        payload = json.dumps(report(reader.consented()), separators=(",", ":")).encode()
        reader.record(ctx, "cohort.report", {"sha256": _sha(payload)})
        return answer(payload, "application/json")

    @router.post("/analysis/similar")
    def similar(body: SimilarIn, request: Request, actor: ActorDep) -> Response:
        """Cases whose phenotypes resemble ``hpo_terms`` (Resnik / funSimAvg, as pyhpo)."""
        ctx = audit_context(request, actor.name)
        case_mode = decide(actor, Action.CASE_SIMILAR).allowed
        if not case_mode:
            require(state.cases, actor, Action.COHORT_SIMILAR, ctx)
        if case_mode:
            network = actor.network if Role.COORDINATOR in actor.roles else None
            facts = reader.readable(
                user=actor.name,
                network=network,
                authorize=lambda ref: decide(actor, Action.CASE_READ, ref),
            )
            index = PhenotypeIndex([f.phenotypes for f in facts])
            hits = index.top(body.hpo_terms, body.top)
            out = []
            for h in hits:
                f = facts[h.position]
                panel = sorted(
                    m.user
                    for m in (f.ref.members if f.ref else ())
                    if m.role is MemberRole.PANEL_MEMBER
                )
                out.append(
                    {
                        "case_id": f.id,
                        "score": round(h.score, 4),
                        "network": f.network,
                        "status": f.status.value,
                        "panel": panel,
                        "shared": [
                            {
                                "query": s.query,
                                "matched": s.matched,
                                "matched_label": _label(s.matched),
                                "ancestor": s.ancestor,
                                "ancestor_label": _label(s.ancestor),
                                "ic": s.ic,
                            }
                            for s in h.shared
                        ],
                    }
                )
            result = {"mode": "cases", "searched": len(index), "hits": out}
            case_ids = [h["case_id"] for h in out]
        else:
            facts = reader.consented()
            index = cohort_index.get(facts)
            hits = index.top(body.hpo_terms, body.top)
            out = []
            for rank, h in enumerate(hits, 1):
                out.append(
                    {
                        "hit": rank,
                        # rounded: a precise score against a unique case says too much
                        "score": round(h.score, 2),
                        "shared": _generalised(index, h.shared),
                    }
                )
            result = {"mode": "anonymised", "searched": len(index), "hits": out}
            case_ids = []
        payload = json.dumps(result, separators=(",", ":")).encode()
        detail = {
            "mode": result["mode"],
            "terms": len(body.hpo_terms),
            "top": body.top,
            "hits": len(out),
            "sha256": _sha(payload),
        }
        reader.record(ctx, "cases.similar", detail, case_ids=case_ids)
        return answer(payload, "application/json")

    @router.get("/exports/registry.csv")
    def registry(request: Request, actor: ActorDep) -> Response:
        """The coordinator's network's consenting cases as EU RD Platform common data elements."""
        ctx = audit_context(request, actor.name)
        require(state.cases, actor, Action.REGISTRY_EXPORT, ctx)
        facts = reader.consented(network=actor.network, pseudonyms=True)
        payload = registry_csv(facts).encode("utf-8")
        reader.record(
            ctx,
            "registry.export",
            {"network": actor.network, "rows": len(facts), "sha256": _sha(payload)},
            case_ids=[f.id for f in facts],
        )
        return answer(
            payload,
            "text/csv; charset=utf-8",
            {"Content-Disposition": 'attachment; filename="registry-cde.csv"'},
        )

    return router


def _generalised(index: PhenotypeIndex, shared, k: int = DEFAULT_K) -> list[dict]:  # noqa: ANN001
    """Each shared ancestor, raised until at least ``k`` cases of the population carry it."""
    space = index.space
    out = []
    seen: set[str] = set()
    for s in shared:
        term = s.ancestor
        candidates = sorted(
            space.up[space.number[term]], key=lambda a: -space.ic[a]
        )  # the term, then its ancestors, most informative first
        chosen = None
        for a in candidates:
            if index.carriers(space.ids[a]) >= k:
                chosen = int(a)
                break
        if chosen is None or space.ids[chosen] in seen:
            continue
        seen.add(space.ids[chosen])
        out.append(
            {
                "query": s.query,
                "ancestor": space.ids[chosen],
                "ancestor_label": _label(space.ids[chosen]),
                "ic": round(float(np.float64(space.ic[chosen])), 4),
            }
        )
    return out
