"""Follow-ups in the store: the treatment category followed and the result, per case.

One encrypted row per case (``followups``, migration ``0008``), bound like
every ciphertext of the store to (table, row id, field) under the case's data
key. Recording needs a signed outcome (else 409: there is nothing to follow
up yet); a later record replaces the earlier one. Recording also moves the
case's ``updated_at``, so the analyses' cache of decrypted cases
(:class:`~cpms_hub.store.analysis.AnalysisReader`) sees the change on the very
next export. Reads and writes are audited in their own transaction, like the
rest of the store.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from cpms_hub.domain import ConflictError, NotFoundError
from cpms_hub.domain.followup import FollowUp, FollowUpDraft

from .cases import AuditContext, Authorize, CaseStore
from .database import session_scope
from .review_schema import FollowUpRow, OutcomeRow

__all__ = ["FollowUpStore", "decrypt_followup"]

_AD = {"table": "followups", "field": "record"}


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def decrypt_followup(cipher, case_id: str, blob: bytes) -> FollowUpDraft:  # noqa: ANN001
    """The follow-up record of ``case_id`` from its ciphertext (``cipher``: the case's)."""
    return FollowUpDraft.from_json(json.loads(cipher.decrypt(blob, row_id=case_id, **_AD)))


class FollowUpStore:
    """Record and read a case's follow-up."""

    def __init__(self, cases: CaseStore) -> None:
        self.cases = cases

    def _followup(self, s, row: FollowUpRow) -> FollowUp:  # noqa: ANN001
        cipher = self.cases._cipher(s, row.case_id)
        return FollowUp(
            case_id=row.case_id,
            draft=decrypt_followup(cipher, row.case_id, row.record_enc),
            recorded_by=row.recorded_by,
            recorded_at=_utc(row.recorded_at),
        )

    def record(
        self, case_id: str, draft: FollowUpDraft, *, authorize: Authorize, ctx: AuditContext
    ) -> FollowUp:
        """The case's clinician records (or replaces) the follow-up of a signed outcome."""
        with session_scope(self.cases.sessions) as s:
            row = self.cases._row(s, case_id)
            self.cases._check(s, row, authorize, ctx, "followup.record")
            outcome = s.get(OutcomeRow, case_id)
            if outcome is None or outcome.signed_at is None:
                raise ConflictError(
                    "no signed outcome to follow up",
                    reasons=("a follow-up is recorded once the panel's outcome is signed",),
                )
            now = datetime.now(UTC)
            record_enc = self.cases._cipher(s, case_id).encrypt(
                json.dumps(draft.to_json(), sort_keys=True).encode(), row_id=case_id, **_AD
            )
            f = s.get(FollowUpRow, case_id)
            replaced = f is not None
            if f is None:
                f = FollowUpRow(case_id=case_id)
                s.add(f)
            f.record_enc = record_enc
            f.recorded_by = ctx.actor
            f.recorded_at = now
            # the analyses' cache is keyed by the case's updated_at: a new follow-up is news
            row.updated_at = now
            self.cases._allowed(
                s, ctx, "followup.record", case_id, detail=f"replaced={str(replaced).lower()}"
            )
            s.flush()
            return self._followup(s, f)

    def get(self, case_id: str, *, authorize: Authorize, ctx: AuditContext) -> FollowUp:
        """The case's follow-up (404 when none was recorded)."""
        with session_scope(self.cases.sessions) as s:
            row = self.cases._row(s, case_id)
            self.cases._check(s, row, authorize, ctx, "followup.read")
            f = s.get(FollowUpRow, case_id)
            if f is None:
                raise NotFoundError("no follow-up is recorded for this case")
            out = self._followup(s, f)
            self.cases._allowed(s, ctx, "followup.read", case_id)
            return out
