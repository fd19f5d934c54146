"""HTTP routes of follow-ups: what became of the patient after the signed outcome.

* ``PUT /cases/{case_id}/follow-up`` (the case's owner and assistants)
  ``{treatment, result}``, two coded values (:mod:`cpms_hub.domain.followup`),
  once the panel's outcome is signed (409 before); replaces an earlier record.
* ``GET /cases/{case_id}/follow-up`` (whoever may read the outcome) - the record,
  who made it and when; 404 when none is recorded.

Both are audited by the store; only codes travel, never free text.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from cpms_hub.domain.followup import FollowUp, FollowUpDraft
from cpms_hub.policy import Action, Actor, decide
from cpms_hub.state import State
from cpms_hub.store.cases import AuditContext

from .models import ErrorOut

__all__ = ["FOLLOWUP_ROUTES_DOC", "followup_router", "followup_json"]

FOLLOWUP_ROUTES_DOC: tuple[tuple[str, str], ...] = (
    ("PUT", "/cases/{case_id}/follow-up"),
    ("GET", "/cases/{case_id}/follow-up"),
)

_ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 403, 404, 409, 422)}


class FollowUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    treatment: str = Field(max_length=40)
    result: str = Field(max_length=40)


def followup_json(f: FollowUp) -> dict[str, Any]:
    return {
        "case_id": f.case_id,
        **f.draft.to_json(),
        "recorded_by": f.recorded_by,
        "recorded_at": f.recorded_at.isoformat(),
    }


async def _actor(request: Request) -> Actor:
    # the app's ActorDep (not imported: app.py imports this module)
    return await request.app.state.cpms_auth.actor(request)


ActorDep = Annotated[Actor, Depends(_actor)]


def followup_router(api_root: str, state: State) -> APIRouter:
    router = APIRouter(prefix=api_root, responses=_ERRORS, tags=["review"])

    def as_(request: Request, actor: Actor, action: Action) -> dict[str, Any]:
        client = request.client.host if request.client else ""
        return {
            "authorize": lambda ref: decide(actor, action, ref),
            "ctx": AuditContext(actor=actor.name, client=client),
        }

    @router.put("/cases/{case_id}/follow-up")
    def record_followup(
        case_id: str, body: FollowUpIn, request: Request, actor: ActorDep
    ) -> dict[str, Any]:
        """Record the treatment category followed and the result (owner, assistants)."""
        draft = FollowUpDraft(treatment=body.treatment, result=body.result)
        f = state.followups.record(case_id, draft, **as_(request, actor, Action.FOLLOWUP_WRITE))
        return followup_json(f)

    @router.get("/cases/{case_id}/follow-up")
    def get_followup(case_id: str, request: Request, actor: ActorDep) -> dict[str, Any]:
        """The case's follow-up, for whoever may read its outcome."""
        return followup_json(
            state.followups.get(case_id, **as_(request, actor, Action.OUTCOME_READ))
        )

    return router
