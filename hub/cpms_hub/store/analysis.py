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
erased cases fall out of it because their rows are gone. A case's follow-up
(:mod:`cpms_hub.store.followup`) comes in the same query; recording one moves
the case's ``updated_at``, so the cache never keeps a stale one.

A cold read of 100,000 cases is bound by per-row Python work, so it is kept
lean: one Core query (no ORM rows) finds the latest consent by ``NOT EXISTS``
and brings ciphertexts, data keys and follow-ups along, unsorted (sorting the
ciphertexts in SQL cost more than sorting the rows here); dates skip their
type decorator; consent scopes are parsed once per distinct value; contents
are parsed by orjson; and the cyclic garbage collector waits until the facts
are built (:func:`_collector_paused`).

Nothing here decides who may *receive* what: the service checks the caller
and anonymises (:mod:`cpms_hub.analysis`) before anything leaves. Every
export is audited here with its parameters and the SHA-256 of what left.
"""

from __future__ import annotations

import functools
import gc
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime

import orjson
from sqlalchemy import DateTime, exists, literal, or_, select, type_coerce
from sqlalchemy.orm import aliased

from cpms_hub.crypto import FieldCipher
from cpms_hub.domain import CaseRef, CaseStatus, ConsentScope
from cpms_hub.domain.analysis import CaseFacts
from cpms_hub.domain.audit import AuditOutcome
from cpms_hub.domain.followup import FollowUpDraft

from .cases import AuditContext, CaseStore, Verdict, _listed, _ref
from .database import session_scope
from .followup import decrypt_followup
from .keys import case_key_id
from .review_schema import FollowUpRow
from .schema import CaseMemberRow, CaseRow, ConsentRow, DataKeyRow

__all__ = ["AnalysisReader"]


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _plain(column):  # noqa: ANN001, ANN202
    """A UTC date column read without its type decorator (:func:`_utc` adds the zone).

    The decorator's per-value Python call cost more than the dates' parsing itself over
    100,000 cases.
    """
    return type_coerce(column, DateTime(timezone=True)).label(column.key)


_STATUS = {s.value: s for s in CaseStatus}
_NOTHING: dict = {}


def _facts(
    row,  # noqa: ANN001
    content: dict | None,
    consent: frozenset[str],
    followup: FollowUpDraft | None = None,
) -> CaseFacts:
    # runs once per case on a cold export: plain loops and look-ups, no generator per field
    content = content or _NOTHING
    patient = content.get("patient") or _NOTHING
    orpha: list[str] = []
    icd10: list[str] = []
    confirmed: list[str] = []
    for d in content.get("diagnoses") or ():
        code, system = d["code"], d.get("system")
        if system == "ORPHA":
            orpha.append(code)
        elif system == "ICD-10":
            icd10.append(code)
        if d.get("confirmed"):
            confirmed.append(code)
    genetics = content.get("genetics")
    return CaseFacts(
        id=row.id,
        network=row.network,
        status=_STATUS[row.status],
        created_at=_utc(row.created_at),
        submitted_at=_utc(row.submitted_at),
        outcome_at=_utc(row.outcome_at),
        sex=patient.get("sex") or "unknown",
        birth_year=patient.get("birth_year"),
        age_at_onset_years=patient.get("age_at_onset_years"),
        country=patient.get("country"),
        phenotypes=tuple(
            [p["hpo_id"] for p in content.get("phenotypes") or () if not p.get("excluded")]
        ),
        orpha=tuple(orpha),
        icd10=tuple(icd10),
        confirmed=tuple(confirmed),
        genetics=tuple([(g["gene"], g["hgvs"]) for g in genetics]) if genetics else (),
        urgency=content.get("urgency") or "routine",
        consent=consent,
        # coded only: the signed outcome's free-text plan never reaches the analyses
        treatment=followup.treatment.value if followup else None,
        followup=followup.result.value if followup else None,
    )


def _ad(row) -> dict:  # noqa: ANN001
    return {"table": "cases", "row_id": row.id, "schema_version": row.schema_version}


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while 100,000 cases' facts are built.

    Every few hundred new objects CPython's collector runs, and its older generations
    walk every object alive, these facts included: about a quarter of a cold export's
    time went there. Reference counting still frees everything that is not a cycle;
    the collector resumes (if it was on) as soon as the facts are built.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@functools.lru_cache(maxsize=256)
def _scopes(scopes: str, withdrawn: str) -> frozenset[str]:
    # a handful of distinct (scopes, withdrawn) pairs over any number of cases: memoised
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
            _plain(CaseRow.updated_at),
            CaseRow.network,
            CaseRow.status,
            _plain(CaseRow.created_at),
            _plain(CaseRow.submitted_at),
            _plain(CaseRow.outcome_at),
            CaseRow.schema_version,
            CaseRow.content_enc,
            CaseRow.pseudonym_enc,
            DataKeyRow.wrapped,
            FollowUpRow.record_enc,
        )

    def _heavy(self):  # noqa: ANN202
        """Ciphertexts of cases, their data keys and follow-ups, in one query."""
        return (
            select(*self._columns())
            .join(DataKeyRow, DataKeyRow.id == literal("case:") + CaseRow.id)
            .outerjoin(FollowUpRow, FollowUpRow.case_id == CaseRow.id)
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
        # orjson: parsing 100,000 decrypted contents is a large share of a cold export
        unwrap, decrypt_json = keys.from_wrapped, orjson.loads
        for row, consent in rows:
            case_id, updated_at = row.id, _utc(row.updated_at)
            kept = cache.get(case_id)
            cipher = None
            if kept is not None and kept[0] == updated_at:
                facts = kept[1]
                if facts.consent != consent:
                    # consent changes without touching the case row: never trust cached scopes
                    facts = replace(facts, consent=consent)
            else:
                cipher = FieldCipher(unwrap(case_key_id(case_id), row.wrapped))
                enc = row.content_enc
                content = (
                    decrypt_json(
                        cipher.decrypt(
                            enc,
                            table="cases",
                            row_id=case_id,
                            field="content",
                            schema_version=row.schema_version,
                        )
                    )
                    if enc is not None
                    else None
                )
                enc = row.record_enc
                followup = decrypt_followup(cipher, case_id, enc) if enc is not None else None
                facts = _facts(row, content, consent, followup)
            fresh[case_id] = (updated_at, facts)
            if pseudonyms and row.pseudonym_enc is not None:
                # pseudonyms are never cached: they leave only in a registry export
                cipher = cipher or FieldCipher(unwrap(case_key_id(case_id), row.wrapped))
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
        with _collector_paused():
            return self._consented(scope, network=network, pseudonyms=pseudonyms)

    def _consented(
        self, scope: ConsentScope, *, network: str | None, pseudonyms: bool
    ) -> list[CaseFacts]:
        # the patient's latest consent record: none recorded after it (NOT EXISTS walks the
        # consents' case index once per case, where a grouped subquery joined back costs twice)
        later = aliased(ConsentRow)
        latest = ~exists().where(
            later.case_id == ConsentRow.case_id, later.recorded_at > ConsentRow.recorded_at
        )

        def studied(*columns, ordered: bool = True):  # noqa: ANN002, ANN202
            stmt = (
                select(
                    CaseRow.id, _plain(CaseRow.updated_at), ConsentRow.scopes, ConsentRow.withdrawn
                )
                .add_columns(*columns)
                .join(ConsentRow, ConsentRow.case_id == CaseRow.id)
                .where(
                    latest,
                    _listed(ConsentRow.scopes, scope),
                    ~_listed(ConsentRow.withdrawn, scope),
                    CaseRow.status != CaseStatus.DRAFT.value,
                )
            )
            if ordered:
                stmt = stmt.order_by(CaseRow.created_at, CaseRow.id)
            return stmt if network is None else stmt.where(CaseRow.network == network)

        with self._lock:
            cache = self._cache
        with session_scope(self.cases.sessions, write=False) as s:
            # Core rows, not ORM ones: at 100,000 cases the ORM's row loading costs more than
            # the decryption it feeds
            conn = s.connection()
            if cache and not pseudonyms:
                found = conn.execute(studied()).all()
                # ciphertext is fetched only for cases not already decrypted as they are now
                missing = sorted(
                    r.id
                    for r in found
                    if (kept := cache.get(r.id)) is None or kept[0] != _utc(r.updated_at)
                )
                if len(missing) <= 2000:
                    full: dict[str, object] = {}
                    for start in range(0, len(missing), 500):
                        chunk = self._heavy().where(CaseRow.id.in_(missing[start : start + 500]))
                        full.update((r.id, r) for r in conn.execute(chunk))
                    gone = set(missing) - set(full)  # erased between the two reads
                    rows = [
                        (full.get(r.id, r), _scopes(r.scopes, r.withdrawn))
                        for r in found
                        if r.id in full or r.id not in gone
                    ]
                    return self._decrypt(rows, pseudonyms=pseudonyms, whole=network is None)
            # cold, or much changed, or pseudonyms (never cached): consent, ciphertexts, data
            # keys and follow-ups in one pass over the cases; cached facts are still reused
            extra = self._columns()[2:]  # id and updated_at come first
            found = conn.execute(
                studied(*extra, ordered=False)
                .join(DataKeyRow, DataKeyRow.id == literal("case:") + CaseRow.id)
                .outerjoin(FollowUpRow, FollowUpRow.case_id == CaseRow.id)
            ).all()
        # sorted here: SQL would sort 100,000 rows with their ciphertexts in a temporary table
        found.sort(key=lambda r: (r.created_at, r.id))
        rows = [(r, _scopes(r.scopes, r.withdrawn)) for r in found]
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
                self._heavy()
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
