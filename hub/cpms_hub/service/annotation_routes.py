"""HTTP routes of shared slide annotations (``/cases/{case_id}/slides/{slide_id}/annotations``).

* ``GET .../slides/{slide_id}/annotations`` - the slide's annotations, oldest first;
  ``GET /cases/{case_id}/annotations`` - those of every slide of the case (what the panel
  discussion lists). Both authorised as ``FILE_READ``: whoever may see the slide sees
  what was said about it.
* ``POST .../slides/{slide_id}/annotations`` ``{"kind", "points", "comment"}`` - 201 and
  the stored annotation. Authorised as ``ANNOTATION_WRITE``: the case's owner, assistants
  and panel members (not coordinators, data scientists or anyone else), with the same
  draft and consent rules as reading.
* ``DELETE .../annotations/{annotation_id}`` - 204; ``ANNOTATION_WRITE`` and only by the
  annotation's author (403 naming the rule otherwise).

These routes use the normal token / OAuth-cookie authentication, never the slide viewer's
image grant: a grant proves that someone may *look at* one slide for a few minutes, while
an annotation is written in a person's name. The viewers therefore write through the
kernel or the Panel app, which call these routes with the user's own client (see
:mod:`cpms_widgets.viewers.slide_viewer`). Responses are ``private, no-store``: comments
are case content.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from cpms_hub.domain import MAX_COMMENT_CHARS, MAX_POLYGON_POINTS, AnnotationDraft
from cpms_hub.policy import Action, Actor
from cpms_hub.state import State
from cpms_hub.store.annotations import AnnotationStore

from .case_access import audit_context, case_policy
from .models import ErrorOut

__all__ = ["ANNOTATION_ROUTES_DOC", "AnnotationIn", "annotation_router"]

#: the routes this module adds (method, path below the API root), for ``ROUTES_DOC``
ANNOTATION_ROUTES_DOC: tuple[tuple[str, str], ...] = (
    ("GET", "/cases/{case_id}/annotations"),
    ("GET", "/cases/{case_id}/slides/{slide_id}/annotations"),
    ("POST", "/cases/{case_id}/slides/{slide_id}/annotations"),
    ("DELETE", "/cases/{case_id}/slides/{slide_id}/annotations/{annotation_id}"),
)

_ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 403, 404, 410, 422)}
_PRIVATE = {"Cache-Control": "private, no-store"}


class AnnotationIn(BaseModel):
    """A new annotation; the shape is checked by :class:`AnnotationDraft` (clear reasons)."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(max_length=16)
    points: list[Any] = Field(max_length=MAX_POLYGON_POINTS + 1)
    # the domain gives the precise limit; this only stops very large bodies early
    comment: str = Field(max_length=MAX_COMMENT_CHARS * 4)


async def _actor(request: Request) -> Actor:
    # the same dependency as the app's ActorDep (not imported: app.py imports this module)
    return await request.app.state.cpms_auth.actor(request)


ActorDep = Annotated[Actor, Depends(_actor)]


def annotation_router(api_root: str, state: State) -> APIRouter:
    """The annotation routes over ``state``."""
    router = APIRouter(prefix=api_root, responses=_ERRORS, tags=["annotations"])
    store = AnnotationStore(state.cases)

    @router.get("/cases/{case_id}/annotations")
    def case_annotations(case_id: str, request: Request, actor: ActorDep) -> JSONResponse:
        """Every annotation of every slide of the case, oldest first."""
        found = store.list_case_annotations(
            case_id,
            authorize=case_policy(actor, Action.FILE_READ),
            ctx=audit_context(request, actor.name),
        )
        return JSONResponse([a.to_json() for a in found], headers=_PRIVATE)

    @router.get("/cases/{case_id}/slides/{slide_id}/annotations")
    def list_annotations(
        case_id: str, slide_id: str, request: Request, actor: ActorDep
    ) -> JSONResponse:
        """The slide's annotations, oldest first."""
        found = store.list_annotations(
            case_id,
            slide_id,
            authorize=case_policy(actor, Action.FILE_READ),
            ctx=audit_context(request, actor.name),
        )
        return JSONResponse([a.to_json() for a in found], headers=_PRIVATE)

    @router.post("/cases/{case_id}/slides/{slide_id}/annotations", status_code=201)
    def add_annotation(
        case_id: str, slide_id: str, body: AnnotationIn, request: Request, actor: ActorDep
    ) -> JSONResponse:
        """Annotate the slide: a point, rectangle or polygon in level-0 pixels, with a comment."""
        draft = AnnotationDraft.parse(body.kind, body.points, body.comment)
        made = store.add_annotation(
            case_id,
            slide_id,
            draft,
            authorize=case_policy(actor, Action.ANNOTATION_WRITE),
            ctx=audit_context(request, actor.name),
        )
        return JSONResponse(made.to_json(), status_code=201, headers=_PRIVATE)

    @router.delete(
        "/cases/{case_id}/slides/{slide_id}/annotations/{annotation_id}", status_code=204
    )
    def delete_annotation(
        case_id: str, slide_id: str, annotation_id: str, request: Request, actor: ActorDep
    ) -> Response:
        """Delete one of your own annotations."""
        store.delete_annotation(
            case_id,
            slide_id,
            annotation_id,
            authorize=case_policy(actor, Action.ANNOTATION_WRITE),
            ctx=audit_context(request, actor.name),
        )
        return Response(status_code=204)

    return router
