"""Audit entries: who did what to which case, when, from where, with what outcome.

Entries form an append-only hash chain (each entry's hash covers the previous
entry's hash), so an edited, removed or reordered entry is detected by
``cpms-admin verify-audit``. Entries never contain patient data: only user
names, action names, case identifiers (random UUIDs), client addresses and
outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["AuditEntry", "AuditOutcome"]


class AuditOutcome:
    ALLOWED = "allowed"
    DENIED = "denied"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    case_id: str | None
    client: str
    outcome: str
    detail: str
    prev_hash: str
    hash: str
