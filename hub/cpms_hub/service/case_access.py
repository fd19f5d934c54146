"""What every router hands the store with a request: who asks, from where, and by which rule.

The store decides nothing itself: each of its methods takes an ``authorize``
callable (the policy's verdict on the case it loaded) and an
:class:`~cpms_hub.store.cases.AuditContext` (the name and client address its
audit entry records). Every router builds both the same way, so they are
built here once.

Actions not on one case (listing, cohorts, registries) are decided before the
store is reached; a refusal is still audited, by :func:`require`.

Routes answered on an image grant know only the grant's user name, not a full
:class:`~cpms_hub.policy.Actor`, which is why :func:`audit_context` takes a name.
"""

from __future__ import annotations

from fastapi import Request

from cpms_hub.policy import Action, Actor, decide
from cpms_hub.store.cases import AuditContext, Authorize, CaseStore

__all__ = ["audit_context", "case_policy", "require"]


def audit_context(request: Request, actor_name: str) -> AuditContext:
    """The audit context of ``request`` made by ``actor_name``."""
    return AuditContext(actor=actor_name, client=request.client.host if request.client else "")


def case_policy(actor: Actor, action: Action) -> Authorize:
    """The store's ``authorize`` for ``actor`` taking ``action`` on the case it loads."""
    return lambda ref: decide(actor, action, ref)


def require(store: CaseStore, actor: Actor, action: Action, ctx: AuditContext) -> None:
    """Go on if ``actor`` may take ``action`` at all; else audit the refusal and raise 403."""
    decision = decide(actor, action)
    if not decision.allowed:
        store.record_denial(ctx, action.value, decision.reasons)
