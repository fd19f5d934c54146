"""HTTP routes of whole-slide images (under ``/cases/{case_id}/slides``).

* ``POST .../slides`` ``{"file_id"}`` de-identifies an uploaded Aperio SVS into a slide
  (:meth:`SlideStore.import_slide <cpms_hub.store.slides.SlideStore.import_slide>`; the
  original upload is deleted) and returns it with the import report: *names* of the
  removed images and header fields, never their values. Authorised as ``FILE_WRITE``.
* ``GET .../slides``, ``GET .../slides/{slide_id}/properties`` and ``.../associated``
  use the normal token/cookie authentication and ``FILE_READ``.
* ``POST .../slides/{slide_id}/grant`` (``FILE_READ``: consent and membership rules
  apply) returns a short-lived grant for this user, case and slide (:mod:`.grants`), plus
  the Deep Zoom URLs. The viewer in the browser sends it in ``X-CPMS-Grant`` to
  ``GET .../dzi`` and ``GET .../tiles/{level}/{col}_{row}.jpeg``.

Trade-off of the tile routes (the hot path: a viewer fetches hundreds of tiles a minute):
they do **no database access per tile**. The HMAC grant, issued after a full policy
decision, is taken as proof of authorisation for its lifetime (``ttl``, 5 minutes by
default). So a withdrawn consent, a removed panel member or an erased case stops new
grants at once, but an already issued grant keeps working until it expires, and an open
slide (which holds the case's data key in memory) stays in the bounded LRU until evicted.
Each grant is audited once (``slide.view``, on its first use), not once per tile
(:class:`.grants.ImageGrants`). Requests with a bad grant are refused with
401 without touching the database (they carry no identity worth auditing, and writing
for them would let anyone load the audit log).

The tile and descriptor routes are ``async`` and, in the steady state (grant already
seen, slide already open, a stored tile passed through), do their work inline on the
event loop: one verified-grant look-up by hash (:class:`.grants.GrantIssuer`), one read
of a few KiB and one AES-GCM segment. That is cheaper than the hop to a worker thread
a synchronous route pays (queue, wake-up, GIL hand-over both ways), and it keeps the
service's threads from contending for the GIL and for the slide's file lock. Only the
first use of a grant (its audit write), the opening of a slide and tiles needing pixel
work (decode, resize, encode) go to a worker thread.

In front of all that, :class:`.tile_path.StoredTilePath` answers the steady state
itself, before the framework's middleware, routing and parameter solving (which cost
each tile more than its own work): ``stored_tile`` below makes the same checks (grant
seen, valid, scoped and unexpired; slide open; tile ready) and anything else falls
through to these routes.

Tile responses are ``Cache-Control: private, max-age=3600`` (a slide id's tiles never
change: a re-import makes a new slide) with ``Vary: X-CPMS-Grant``.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from cpms_hub.domain import CpmsError
from cpms_hub.imaging import SlideTileSource, UnsupportedFormatError, deidentify_svs
from cpms_hub.policy import Action, Actor
from cpms_hub.state import State
from cpms_hub.store.slides import Slide, SlideStore

from .case_access import audit_context, case_policy
from .errors import error_response
from .grants import GRANT_HEADER, GrantClaims, ImageGrants
from .models import ErrorOut
from .tile_path import ReadyTile

__all__ = ["SLIDE_ROUTES_DOC", "TILE_HEADERS", "SlideImportIn", "slide_routers"]

log = logging.getLogger("cpms.store")

#: the routes this module adds (method, path below the API root), for ``ROUTES_DOC``
SLIDE_ROUTES_DOC: tuple[tuple[str, str], ...] = (
    ("GET", "/cases/{case_id}/slides"),
    ("POST", "/cases/{case_id}/slides"),
    ("POST", "/cases/{case_id}/slides/{slide_id}/grant"),
    ("GET", "/cases/{case_id}/slides/{slide_id}/dzi"),
    ("GET", "/cases/{case_id}/slides/{slide_id}/tiles/{level}/{col}_{row}.jpeg"),
    ("GET", "/cases/{case_id}/slides/{slide_id}/properties"),
    ("GET", "/cases/{case_id}/slides/{slide_id}/associated"),
)

_ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 403, 404, 409, 410, 413, 415, 422)}
_PRIVATE = {"Cache-Control": "private, no-store"}
#: tiles of one slide id never change, so the browser may keep them; per grant (Vary)
TILE_HEADERS = {
    "Cache-Control": "private, max-age=3600",
    "Vary": GRANT_HEADER,
    "X-Content-Type-Options": "nosniff",
}


class SlideImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: str = Field(min_length=1, max_length=36)


async def _actor(request: Request) -> Actor:
    # the same dependency as the app's ActorDep (not imported: app.py imports this module)
    return await request.app.state.cpms_auth.actor(request)


ActorDep = Annotated[Actor, Depends(_actor)]


class _Allowed:
    """The verdict for a grant-authorised open: the grant came from a policy decision."""

    allowed = True
    reasons: tuple[str, ...] = ()


class _Entry:
    """An open slide in the LRU; closed when evicted and no request is using it."""

    __slots__ = ("source", "users", "evicted")

    def __init__(self, source: SlideTileSource) -> None:
        self.source = source
        self.users = 0
        self.evicted = False


class _OpenSlides:
    """A bounded LRU of open tile sources, so tile requests do not reopen the TIFF."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, slide_id: str) -> _Entry | None:
        """The open slide, acquired (release it), or None when it must be opened."""
        with self._lock:
            entry = self._entries.get(slide_id)
            if entry is not None:
                self._entries.move_to_end(slide_id)
                entry.users += 1
            return entry

    def acquire(self, slide_id: str, opener: Callable[[], SlideTileSource]) -> _Entry:
        entry = self.peek(slide_id)
        if entry is not None:
            return entry
        # opened outside the lock: opening reads the TIFF directories (milliseconds)
        source = opener()
        with self._lock:
            entry = self._entries.get(slide_id)
            if entry is not None:  # another request opened it meanwhile
                source.close()
            else:
                entry = self._entries[slide_id] = _Entry(source)
                while len(self._entries) > self._size:
                    _, old = self._entries.popitem(last=False)
                    old.evicted = True
                    if old.users == 0:
                        old.source.close()
            self._entries.move_to_end(slide_id)
            entry.users += 1
            return entry

    def release(self, entry: _Entry) -> None:
        with self._lock:
            entry.users -= 1
            if entry.evicted and entry.users == 0:
                entry.source.close()

    def close(self) -> None:
        with self._lock:
            for entry in self._entries.values():
                entry.evicted = True
                if entry.users == 0:
                    entry.source.close()
            self._entries.clear()


def _slide_out(slide: Slide) -> dict:
    return {
        "id": slide.id,
        "case_id": slide.case_id,
        "file_id": slide.blob_id,
        "source_file_id": slide.source_file_id,
        "width": slide.width,
        "height": slide.height,
        "mpp": slide.mpp,
        "levels": slide.levels,
        "created_by": slide.created_by,
        "created_at": slide.created_at.isoformat(),
        "report": {
            "kept_images": list(slide.kept_images),
            "removed_images": list(slide.removed_images),
            "removed_fields": list(slide.removed_fields),
        },
    }


def properties_of(src: SlideTileSource) -> dict:
    """The JSON-ready properties of an open slide: nothing identifying."""
    p = src.properties
    return {
        "width": p.width,
        "height": p.height,
        "mpp": p.microns_per_pixel,
        "objective_power": p.objective_power,
        "tile_size": p.tile_size,
        "stored_levels": [list(wh) for wh in p.stored_levels],
        "deepzoom_levels": len(src.levels),
        "deidentified": p.deidentified,
    }


def slide_routers(
    api_root: str,
    state: State,
    *,
    grant_ttl: int = 300,
    open_slides: int = 8,
) -> tuple[APIRouter, APIRouter, ReadyTile]:
    """``(routes, hot, stored_tile)``: the slide routes over ``state``, the descriptor
    and tile routes again (the same endpoints) in a router hidden from the OpenAPI
    document, and the steady-state tile for :class:`.tile_path.StoredTilePath`.

    An app includes ``hot`` before its other routers: a request is matched against the
    routes in order, one regular expression each, and a viewer fetches hundreds of
    tiles a minute. ``routes`` documents them where they belong (and serves them too,
    for an app that includes only ``routes``)."""
    router = APIRouter(prefix=api_root, responses=_ERRORS, tags=["slides"])
    hot = APIRouter(prefix=api_root, responses=_ERRORS, tags=["slides"])
    slides = SlideStore(state.cases, deidentify=deidentify_svs, tile_source=SlideTileSource)
    grants = ImageGrants(state, kind="slide", label="slide", ttl=grant_ttl)
    cache = _OpenSlides(open_slides)

    def base(case_id: str, slide_id: str) -> str:
        return f"{api_root}/cases/{case_id}/slides/{slide_id}"

    def granted(request: Request, case_id: str, slide_id: str) -> GrantClaims:
        """Verify the grant; the first use of each grant writes one ``slide.view``."""
        client = request.client.host if request.client else ""
        return grants.verify(request.headers.get(GRANT_HEADER), case_id, slide_id, client)

    def source_for(request: Request, claims: GrantClaims, case_id: str, slide_id: str) -> _Entry:
        def opener() -> SlideTileSource:
            return slides.open_tiles(
                case_id,
                slide_id,
                authorize=lambda _ref: _Allowed(),
                ctx=audit_context(request, claims.user),
            )

        # keyed by case too: a grant for (case X, slide S) must not reach another case's S
        return cache.acquire(f"{case_id}/{slide_id}", opener)

    @router.post("/cases/{case_id}/slides", status_code=201, response_model=None)
    def import_slide(
        case_id: str, body: SlideImportIn, request: Request, actor: ActorDep
    ) -> dict | JSONResponse:
        """De-identify an uploaded Aperio SVS into a slide; the original upload is deleted."""
        try:
            slide = slides.import_slide(
                case_id,
                body.file_id,
                authorize=case_policy(actor, Action.FILE_WRITE),
                ctx=audit_context(request, actor.name),
            )
        except UnsupportedFormatError as exc:
            # a well-formed file of another kind: the client's choice, not a server fault
            return error_response(415, "unsupported slide format", exc.reasons)
        return _slide_out(slide)

    @router.get("/cases/{case_id}/slides")
    def list_slides(case_id: str, request: Request, actor: ActorDep) -> list[dict]:
        found = slides.list_slides(
            case_id,
            authorize=case_policy(actor, Action.FILE_READ),
            ctx=audit_context(request, actor.name),
        )
        return [_slide_out(s) for s in found]

    @router.post("/cases/{case_id}/slides/{slide_id}/grant")
    def grant(case_id: str, slide_id: str, request: Request, actor: ActorDep) -> JSONResponse:
        """A short-lived grant for this user to view this slide (send it in X-CPMS-Grant)."""
        slides.get_slide(
            case_id,
            slide_id,
            authorize=case_policy(actor, Action.FILE_READ),
            ctx=audit_context(request, actor.name),
            action="slide.grant",
        )
        body = {
            **grants.issue(actor.name, case_id, slide_id),
            "dzi_url": base(case_id, slide_id) + "/dzi",
            "tiles_url": base(case_id, slide_id) + "/tiles/",
        }
        # no-store: a grant is a credential and must not sit in any cache
        return JSONResponse(body, headers=_PRIVATE)

    async def granted_source(request: Request, case_id: str, slide_id: str) -> _Entry:
        """The open slide a request's grant reaches (acquired: release it).

        On the event loop: a grant already seen and a slide already open cost no thread
        hop and no database access; the first use of a grant (its one audit write) and
        the opening of a slide (reads the TIFF directories) go to a worker thread."""
        header = request.headers.get(GRANT_HEADER)
        claims = grants.already_seen(header, case_id, slide_id)  # 401 for a bad grant
        if claims is None:
            claims = await run_in_threadpool(granted, request, case_id, slide_id)
        key = f"{case_id}/{slide_id}"

        def open_slide() -> None:
            cache.release(source_for(request, claims, case_id, slide_id))

        entry = cache.peek(key)
        while entry is None:
            # opened (and let go) in the thread, taken here: a request cancelled while
            # its slide opens must not leave the slide marked as in use for ever
            await run_in_threadpool(open_slide)
            entry = cache.peek(key)
        return entry

    @hot.get("/cases/{case_id}/slides/{slide_id}/dzi", include_in_schema=False)
    @router.get("/cases/{case_id}/slides/{slide_id}/dzi")
    async def dzi(case_id: str, slide_id: str, request: Request) -> Response:
        """The Deep Zoom descriptor; needs a grant in X-CPMS-Grant."""
        entry = await granted_source(request, case_id, slide_id)
        try:
            xml = entry.source.dzi()
        finally:
            cache.release(entry)
        return Response(xml, media_type="application/xml", headers=TILE_HEADERS)

    @hot.get(
        "/cases/{case_id}/slides/{slide_id}/tiles/{level}/{col}_{row}.jpeg",
        include_in_schema=False,
    )
    @router.get("/cases/{case_id}/slides/{slide_id}/tiles/{level}/{col}_{row}.jpeg")
    async def tile(case_id: str, slide_id: str, level: int, col: int, row: int, request: Request):  # noqa: ANN201
        """One Deep Zoom tile; needs a grant in X-CPMS-Grant. No database access once the
        grant has been seen (see the module documentation for the trade-off)."""
        entry = await granted_source(request, case_id, slide_id)
        try:
            # inline, on the loop: a stored tile is one read of a few KiB from the page
            # cache and one segment's AES-GCM (tens of microseconds), far less than a
            # hop to a worker thread; only tiles needing pixel work take the hop (edge
            # tiles made inline measured no better: the codecs release the GIL, so in a
            # thread they run on the other core while the loop serves the rest)
            found = entry.source.ready_tile(level, col, row)
            if found is None:
                found = await run_in_threadpool(entry.source.tile, level, col, row)
        except CpmsError:
            raise  # NotFound → 404, IntegrityError → 500, in the one error shape
        except Exception as exc:  # a damaged tile must fail alone, never the service
            log.error(
                "tile %s/%s/%s of slide %s failed: %s",
                level,
                col,
                row,
                slide_id,
                type(exc).__name__,
            )
            return error_response(500, "internal error", ["the tile could not be read"])
        finally:
            cache.release(entry)
        data, media_type = found
        return Response(data, media_type=media_type, headers=TILE_HEADERS)

    @router.get("/cases/{case_id}/slides/{slide_id}/properties")
    def properties(case_id: str, slide_id: str, request: Request, actor: ActorDep) -> JSONResponse:
        """Dimensions, resolution, levels and objective power; nothing identifying."""
        slide = slides.get_slide(
            case_id,
            slide_id,
            authorize=case_policy(actor, Action.FILE_READ),
            ctx=audit_context(request, actor.name),
        )
        entry = cache.acquire(
            f"{case_id}/{slide_id}",
            lambda: slides.open_tiles(
                case_id,
                slide_id,
                authorize=lambda _r: _Allowed(),
                ctx=audit_context(request, actor.name),
            ),
        )
        try:
            props = properties_of(entry.source)
        finally:
            cache.release(entry)
        props["associated_images"] = list(slide.kept_images)
        return JSONResponse(props, headers=_PRIVATE)

    @router.get("/cases/{case_id}/slides/{slide_id}/associated")
    def associated(case_id: str, slide_id: str, request: Request, actor: ActorDep) -> list[str]:
        """Names of the associated images left after de-identification (the thumbnail)."""
        return slides.associated(
            case_id,
            slide_id,
            authorize=case_policy(actor, Action.FILE_READ),
            ctx=audit_context(request, actor.name),
        )

    def stored_tile(
        case_id: str, slide_id: str, level: int, col: int, row: int, grant: str | None
    ) -> tuple[bytes, str] | None:
        """The steady-state tile for :class:`.tile_path.StoredTilePath`: the grant seen
        and valid for this case and slide, the slide open, the tile ready without pixel
        work; None (or an exception) sends the request to :func:`tile` instead."""
        if grants.already_seen(grant, case_id, slide_id) is None:  # first use: audit
            return None
        entry = cache.peek(f"{case_id}/{slide_id}")
        if entry is None:
            return None
        try:
            return entry.source.ready_tile(level, col, row)
        finally:
            cache.release(entry)

    return router, hot, stored_tile
