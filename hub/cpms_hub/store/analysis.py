"""The store's side of anonymised analysis: which cases may be studied, decrypted in bulk.

Consent decides in SQL: a case is studied only while the *latest* consent
record of its patient grants the scope (``registries``: network databases and
registries) and has not withdrawn it — the scope names are kept in clear in
``consents.scopes`` / ``consents.withdrawn`` for exactly this. Drafts are never
studied. So a withdrawal drops the case from the very next export.

The chosen cases are decrypted in one pass: their wrapped data keys come in
the same query as the rows, and the decrypted facts are kept in memory keyed
by the row's ``updated_at`` (every change of content or status moves it), so
a second export over 100,000 cases decrypts only what changed. The cache
lives in the store service, the one process that holds the keys anyway;
erased cases fall out of it because their rows are gone.

Nothing here decides who may *receive* what: the service checks the caller
and anonymises (:mod:`cpms_hub.analysis`) before anything leaves. Every
export is audited here with its parameters and the SHA-256 of what left.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import and_, func, literal, or_, select

from cpms_hub.crypto import FieldCipher
from cpms_hub.domain import CaseRef, CaseStatus, ConsentScope
from cpms_hub.domain.analysis import CaseFacts
from cpms_hub.domain.audit import AuditOutcome

from .cases import AuditContext, CaseStore, Verdict, _listed, _ref
from .database import session_scope
from .keys import case_key_id
from .schema import CaseMemberRow, CaseRow, ConsentRow, DataKeyRow

__all__ = ["AnalysisReader"]


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _facts(row, content: dict | None, consent: frozenset[str]) -> CaseFacts:  # noqa: ANN001
    patient = (content or {}).get("patient") or {}
    phenotypes = (content or {}).get("phenotypes") or []
    diagnoses = (content or {}).get("diagnoses") or []
    return CaseFacts(
        id=row.id,
        network=row.network,
        status=CaseStatus(row.status),
        created_at=_utc(row.created_at),
        submitted_at=_utc(row.submitted_at),
        outcome_at=_utc(row.outcome_at),
        sex=patient.get("sex") or "unknown",
        birth_year=patient.get("birth_year"),
        age_at_onset_years=patient.get("age_at_onset_years"),
        country=patient.get("country"),
        phenotypes=tuple(p["hpo_id"] for p in phenotypes if not p.get("excluded")),
        orpha=tuple(d["code"] for d in diagnoses if d.get("system") == "ORPHA"),
        icd10=tuple(d["code"] for d in diagnoses if d.get("system") == "ICD-10"),
        confirmed=tuple(d["code"] for d in diagnoses if d.get("confirmed")),
        genetics=tuple((g["gene"], g["hgvs"]) for g in (content or {}).get("genetics") or []),
        urgency=(content or {}).get("urgency") or "routine",
        consent=consent,
    )


def _ad(row) -> dict:  # noqa: ANN001
    return {"table": "cases", "row_id": row.id, "schema_version": row.schema_version}


def _scopes(scopes: str, withdrawn: str) -> frozenset[str]:
    gone = set(withdrawn.split(",")) if withdrawn else set()
    return frozenset(s for s in scopes.split(",") if s and s not in gone)


class AnalysisReader:
    """Bulk, consent-filtered reads of case facts for the analyses, and their audit."""

    def __init__(self, cases: CaseStore) -> None:
        self.cases = cases
        self._cache: dict[str, tuple[datetime, CaseFacts]] = {}
        self._lock = threading.Lock()

    def _columns(self):  # noqa: ANN202
        return (
            CaseRow.id,
            CaseRow.network,
            CaseRow.status,
            CaseRow.created_at,
            CaseRow.updated_at,
            CaseRow.submitted_at,
            CaseRow.outcome_at,
            CaseRow.schema_version,
            CaseRow.content_enc,
            CaseRow.pseudonym_enc,
            DataKeyRow.wrapped,
        )

    def _decrypt(
        self,
        rows: Iterable[tuple],
        *,
        pseudonyms: bool = False,
        whole: bool = False,
    ) -> list[CaseFacts]:
        """Facts of ``(row, consent scopes)`` pairs; ``whole``: all studied cases (the cache
        keeps only these)."""
        keys = self.cases.keys
        out: list[CaseFacts] = []
        fresh: dict[str, tuple[datetime, CaseFacts]] = {}
        with self._lock:
            cache = self._cache
        for row, consent in rows:
            kept = cache.get(row.id)
            cipher = None
            if kept is not None and kept[0] == row.updated_at:
                facts = kept[1]
            else:
                cipher = FieldCipher(keys.from_wrapped(case_key_id(row.id), row.wrapped))
                content = (
                    json.loads(cipher.decrypt(row.content_enc, field="content", **_ad(row)))
                    if row.content_enc is not None
                    else None
                )
                facts = _facts(row, content, consent)
            if facts.consent != consent:
                # consent changes without touching the case row: never trust the cached scopes
                facts = replace(facts, consent=consent)
            fresh[row.id] = (row.updated_at, facts)
            if pseudonyms and row.pseudonym_enc is not None:
                # pseudonyms are never cached: they leave only in a registry export
                cipher = cipher or FieldCipher(keys.from_wrapped(case_key_id(row.id), row.wrapped))
                facts = replace(
                    facts,
                    pseudonym=cipher.decrypt_text(row.pseudonym_enc, field="pseudonym", **_ad(row)),
                )
            out.append(facts)
        with self._lock:
            if whole:
                # only what this read saw stays: erased and withdrawn cases leave the cache
                self._cache = fresh
            else:
                self._cache = {**self._cache, **fresh}
        return out

    def consented(
        self,
        scope: ConsentScope = ConsentScope.REGISTRIES,
        *,
        network: str | None = None,
        pseudonyms: bool = False,
    ) -> list[CaseFacts]:
        """Submitted cases whose patient's latest consent grants ``scope`` now."""
        latest = (
            select(ConsentRow.case_id, func.max(ConsentRow.recorded_at).label("at"))
            .group_by(ConsentRow.case_id)
            .subquery()
        )
        light = (
            select(CaseRow.id, CaseRow.updated_at, ConsentRow.scopes, ConsentRow.withdrawn)
            .join(ConsentRow, ConsentRow.case_id == CaseRow.id)
            .join(
                latest,
                and_(ConsentRow.case_id == latest.c.case_id, ConsentRow.recorded_at == latest.c.at),
            )
            .where(
                _listed(ConsentRow.scopes, scope),
                ~_listed(ConsentRow.withdrawn, scope),
                CaseRow.status != CaseStatus.DRAFT.value,
            )
            .order_by(CaseRow.created_at, CaseRow.id)
        )
        if network is not None:
            light = light.where(CaseRow.network == network)
        with session_scope(self.cases.sessions, write=False) as s:
            found = s.execute(light).all()
            with self._lock:
                cache = self._cache
            # ciphertext is fetched only for cases not already decrypted as they are now
            missing = [
                r.id
                for r in found
                if pseudonyms or (kept := cache.get(r.id)) is None or kept[0] != r.updated_at
            ]
            heavy = select(*self._columns()).join(
                DataKeyRow, DataKeyRow.id == literal("case:") + CaseRow.id
            )
            full: dict[str, object] = {}
            if len(missing) > 2000:
                wanted = set(missing)
                full = {r.id: r for r in s.execute(heavy) if r.id in wanted}
            else:
                for start in range(0, len(missing), 500):
                    chunk = missing[start : start + 500]
                    full.update((r.id, r) for r in s.execute(heavy.where(CaseRow.id.in_(chunk))))
        gone = set(missing) - set(full)  # erased between the two reads
        rows = [
            (full.get(r.id, r), _scopes(r.scopes, r.withdrawn)) for r in found if r.id not in gone
        ]
        return self._decrypt(rows, pseudonyms=pseudonyms, whole=network is None)

    def readable(
        self,
        *,
        user: str,
        network: str | None,
        authorize: Callable[[CaseRef], Verdict],
    ) -> list[CaseFacts]:
        """Cases ``user`` may read (member, or their network's for coordinators), with refs."""
        with session_scope(self.cases.sessions, write=False) as s:
            member_ids = select(CaseMemberRow.case_id).where(CaseMemberRow.user == user)
            cond = CaseRow.id.in_(member_ids)
            if network is not None:
                cond = or_(cond, CaseRow.network == network)
            rows = s.scalars(select(CaseRow).where(cond).order_by(CaseRow.created_at)).all()
            refs = {r.id: _ref(r) for r in rows}
            allowed = [rid for rid, ref in refs.items() if authorize(ref).allowed]
            if not allowed:
                return []
            stmt = (
                select(*self._columns())
                .join(DataKeyRow, DataKeyRow.id == literal("case:") + CaseRow.id)
                .where(CaseRow.id.in_(allowed))
                .order_by(CaseRow.created_at, CaseRow.id)
            )
            found = [
                (r, frozenset(c.value for c in refs[r.id].consent)) for r in s.execute(stmt).all()
            ]
        facts = self._decrypt(found)
        return [replace(f, ref=refs[f.id]) for f in facts]

    def record(
        self,
        ctx: AuditContext,
        action: str,
        detail: dict,
        *,
        case_ids: Iterable[str] = (),
    ) -> None:
        """One audit entry for the export (parameters and fingerprint), one per case named."""
        text = json.dumps(detail, sort_keys=True, separators=(",", ":"))
        with session_scope(self.cases.sessions) as s:
            for case_id in case_ids:
                self.cases.audit.append(
                    s,
                    actor=ctx.actor,
                    action=action,
                    outcome=AuditOutcome.ALLOWED,
                    client=ctx.client,
                    case_id=case_id,
                    detail=f"sha256={detail.get('sha256', '')}",
                )
            self.cases.audit.append(
                s,
                actor=ctx.actor,
                action=action,
                outcome=AuditOutcome.ALLOWED,
                client=ctx.client,
                detail=text,
            )
