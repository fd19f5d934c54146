"""HTTP routes of DICOM studies (under ``/cases/{case_id}/dicom``), for the viewer.

* ``POST .../dicom/imports`` ``{"file_id", "confirm_burned_in"?, "mask_regions"?}``
  imports an uploaded ``.dcm`` or ``.zip`` (:meth:`DicomStore.import_file
  <cpms_hub.store.dicom.DicomStore.import_file>`): every instance de-identified, and
  reported as ``stored``, ``held`` (possible burned-in text) or ``error``; the rest of the
  import proceeds past a bad file. ``FILE_WRITE``.
* ``GET .../dicom/studies`` lists studies and series (``FILE_READ``).
* ``POST .../dicom/series/{series_uid}/grant`` (``FILE_READ``) returns a short-lived grant
  for this user, case and series (:mod:`.grants`); the viewer sends it in
  ``X-CPMS-Grant`` to ``GET .../meta``, ``.../instances/{sop}/frames/{n}`` (raw
  little-endian pixels), ``.../slices/{selection}`` (several frames in one answer, by
  their place in the series: what the viewer uses) and ``.../frames/{n}/rendered``
  (8-bit PNG/JPEG).

The grant routes mirror the slide tiles (see :mod:`.slide_routes` for the trade-off):
**no database access per frame**. Issuing a grant reads the series' index (audited
``dicom.grant``, after the full policy decision) and keeps it, with the case's data key,
in a bounded LRU; a series evicted meanwhile is opened again on its next request (audited
``dicom.open``). Frames are then read straight from the encrypted blobs at an offset (the
file itself for native pixel data, a decoded-frames blob for compressed data), on the
event loop. Each grant's first use is audited once (``dicom.view``).
"""

from __future__ import annotations

import json
import struct
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from cpms_hub.domain import NotFoundError, ValidationError
from cpms_hub.imaging.deid import DeidKeys
from cpms_hub.imaging.dicom import render_frame
from cpms_hub.imaging.dicom_import import iter_items, prepare_instance
from cpms_hub.policy import Action, Actor
from cpms_hub.state import State
from cpms_hub.store.dicom import DicomInstance, DicomStore

from .case_access import audit_context, case_policy
from .grants import GRANT_HEADER, GrantClaims, ImageGrants
from .models import ErrorOut

__all__ = [
    "DICOM_ROUTES_DOC",
    "MAX_BATCH_SLICES",
    "SLICES_MEDIA_TYPE",
    "DicomImportIn",
    "dicom_router",
    "dicom_store",
    "parse_slices",
]

DICOM_ROUTES_DOC: tuple[tuple[str, str], ...] = (
    ("POST", "/cases/{case_id}/dicom/imports"),
    ("GET", "/cases/{case_id}/dicom/studies"),
    ("POST", "/cases/{case_id}/dicom/series/{series_uid}/grant"),
    ("GET", "/cases/{case_id}/dicom/series/{series_uid}/meta"),
    ("GET", "/cases/{case_id}/dicom/series/{series_uid}/instances/{sop_uid}/frames/{n}"),
    ("GET", "/cases/{case_id}/dicom/series/{series_uid}/slices/{selection}"),
    (
        "GET",
        "/cases/{case_id}/dicom/series/{series_uid}/instances/{sop_uid}/frames/{n}/rendered",
    ),
)

_ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 403, 404, 409, 413, 422)}
#: slices per batch request, and bytes: a batch is streamed, but bounded all the same
MAX_BATCH_SLICES = 64
MAX_BATCH_BYTES = 64 * 1024 * 1024
#: the batch answer: per slice, its number and length (two little-endian uint32), then
#: its raw pixels, in the order asked
SLICES_MEDIA_TYPE = "application/vnd.cpms.frames"
_RECORD = struct.Struct("<II")
_PRIVATE = {"Cache-Control": "private, no-store"}
_FRAME_HEADERS = {
    "Cache-Control": "private, max-age=3600",
    "Vary": GRANT_HEADER,
    "X-Content-Type-Options": "nosniff",
}


class DicomImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: str = Field(min_length=1, max_length=36)
    confirm_burned_in: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=100_000
    )
    mask_regions: dict[str, list[list[int]]] = Field(default_factory=dict)


def _prepare(data: bytes, secret: bytes, confirmed, mask):  # noqa: ANN001, ANN202
    return prepare_instance(data, DeidKeys(secret), confirmed=confirmed, mask=mask)


def dicom_store(state: State) -> DicomStore:
    """The DICOM store of a deployment, wired to the imaging layer."""
    return DicomStore(state.cases, prepare=_prepare, items=iter_items)


async def _actor(request: Request) -> Actor:
    return await request.app.state.cpms_auth.actor(request)


ActorDep = Annotated[Actor, Depends(_actor)]


class _Allowed:
    allowed = True
    reasons: tuple[str, ...] = ()


class _OpenSeries:
    """An opened series: the case key and its instances, by SOP UID, in display order."""

    __slots__ = ("key", "instances", "by_sop", "modality", "slices", "_meta")

    def __init__(self, key: bytes, instances: list[DicomInstance]) -> None:
        self.key = key
        self.instances = instances
        self.by_sop = {i.sop_uid: i for i in instances}
        self.modality = instances[0].modality if instances else ""
        #: what the viewer scrolls through: every frame of every instance, in display order
        self.slices = [(i, n) for i in instances for n in range(1, i.frames + 1)]
        self._meta: bytes | None = None

    def meta_body(self, series_uid: str) -> bytes:
        """The JSON the viewer opens the series with (made once: it never changes)."""
        if self._meta is None:
            body = {
                "series_uid": series_uid,
                "modality": self.modality,
                "instances": [i.view for i in self.instances],
            }
            self._meta = json.dumps(
                body, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode()
        return self._meta


def parse_slices(selection: str, count: int, *, limit: int = MAX_BATCH_SLICES) -> list[int]:
    """The slice numbers (from 0, display order) of ``selection``: numbers and ranges
    separated by commas (``"0-15"``, ``"7,8,6,9-12"``, ``"20-5"`` counts down), in the
    order given, each at most once, at most ``limit`` of them."""
    out: list[int] = []
    seen: set[int] = set()
    for item in selection.split(","):
        first, dash, last = item.strip().partition("-")
        if not (first.isdigit() and (not dash or last.isdigit())) or len(item) > 12:
            raise ValidationError("slices", "is a list of numbers and ranges like 0-15,20")
        a, b = int(first), int(last) if dash else int(first)
        step = 1 if b >= a else -1
        if abs(b - a) >= limit:
            raise ValidationError("slices", f"at most {limit} slices per request")
        for i in range(a, b + step, step):
            if i >= count:
                raise NotFoundError(f"slice numbers run from 0 to {count - 1}")
            if i not in seen:
                seen.add(i)
                out.append(i)
        if len(out) > limit:
            raise ValidationError("slices", f"at most {limit} slices per request")
    return out


class _SeriesCache:
    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, _OpenSeries] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, key: str) -> _OpenSeries | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: _OpenSeries) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def get(self, key: str, opener) -> _OpenSeries:  # noqa: ANN001
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        entry = opener()
        with self._lock:
            self._entries[key] = entry
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return entry


def dicom_router(
    api_root: str, state: State, *, grant_ttl: int = 300, open_series: int = 16
) -> APIRouter:
    router = APIRouter(prefix=api_root, responses=_ERRORS, tags=["dicom"])
    store = dicom_store(state)
    grants = ImageGrants(state, kind="dicom", label="series", scope_prefix="dicom:", ttl=grant_ttl)
    cache = _SeriesCache(open_series)

    def base(case_id: str, series_uid: str) -> str:
        return f"{api_root}/cases/{case_id}/dicom/series/{series_uid}"

    def granted(request: Request, case_id: str, series_uid: str) -> GrantClaims:
        client = request.client.host if request.client else ""
        return grants.verify(request.headers.get(GRANT_HEADER), case_id, series_uid, client)

    def series_for(request: Request, claims: GrantClaims, case_id: str, series_uid: str):  # noqa: ANN202
        def opener() -> _OpenSeries:
            key, found = store.instances(
                case_id,
                authorize=lambda _ref: _Allowed(),
                ctx=audit_context(request, claims.user),
                action="dicom.open",
                series_uid=series_uid,
            )
            if not found:
                raise NotFoundError("no such series in this case")
            return _OpenSeries(key, found)

        # keyed by case too: a grant for (case X, series S) must not reach another case's S
        return cache.get(f"{case_id}/{series_uid}", opener)

    def _fast_grant(request: Request, case_id: str, series_uid: str) -> GrantClaims | None:
        """The claims of a grant already audited, or None when the slow path is needed."""
        return grants.already_seen(request.headers.get(GRANT_HEADER), case_id, series_uid)

    async def granted_series(request: Request, case_id: str, series_uid: str) -> _OpenSeries:
        """The open series a request's grant reaches, for the routes run on the event loop.

        A grant already seen and a series already open cost no thread hop; the first
        request of either (one audit write, one index read) goes to a worker thread."""
        claims = _fast_grant(request, case_id, series_uid)
        if claims is None:
            claims = await run_in_threadpool(granted, request, case_id, series_uid)
        series = cache.peek(f"{case_id}/{series_uid}")
        if series is None:
            series = await run_in_threadpool(series_for, request, claims, case_id, series_uid)
        return series

    def frame_bytes(series: _OpenSeries, sop_uid: str, n: int) -> tuple[bytes, DicomInstance]:
        inst = series.by_sop.get(sop_uid)
        if inst is None:
            raise NotFoundError("no such instance in this series")
        if n < 1 or n > inst.frames:
            raise NotFoundError(f"frame numbers run from 1 to {inst.frames}")
        offset = inst.pixel_offset + (n - 1) * inst.frame_bytes
        return store.read_blob(series.key, inst.pixel_blob_id, offset, inst.frame_bytes), inst

    @router.post("/cases/{case_id}/dicom/imports", response_model=None)
    def import_dicom(case_id: str, body: DicomImportIn, request: Request, actor: ActorDep) -> dict:
        """De-identify and store the instances of an uploaded .dcm or .zip; the report."""
        for key, rects in body.mask_regions.items():
            if len(key) > 64 or len(rects) > 64:
                raise ValidationError("mask_regions", "at most 64 regions per instance key")
        return store.import_file(
            case_id,
            body.file_id,
            confirmed=body.confirm_burned_in,
            mask=body.mask_regions,
            authorize=case_policy(actor, Action.FILE_WRITE),
            ctx=audit_context(request, actor.name),
        )

    @router.get("/cases/{case_id}/dicom/studies")
    def list_studies(case_id: str, request: Request, actor: ActorDep) -> JSONResponse:
        studies = store.list_studies(
            case_id,
            authorize=case_policy(actor, Action.FILE_READ),
            ctx=audit_context(request, actor.name),
        )
        return JSONResponse(studies, headers=_PRIVATE)

    @router.post("/cases/{case_id}/dicom/series/{series_uid}/grant")
    def grant(case_id: str, series_uid: str, request: Request, actor: ActorDep) -> JSONResponse:
        """A short-lived grant for this user to view this series (send it in X-CPMS-Grant)."""
        key, found = store.instances(
            case_id,
            authorize=case_policy(actor, Action.FILE_READ),
            ctx=audit_context(request, actor.name),
            action="dicom.grant",
            series_uid=series_uid,
        )
        if not found:
            raise NotFoundError("no such series in this case")
        # the viewer's next requests (meta, first frame) then find the series open
        opened = _OpenSeries(key, found)
        opened.meta_body(series_uid)
        cache.put(f"{case_id}/{series_uid}", opened)
        body = {
            **grants.issue(actor.name, case_id, series_uid),
            "meta_url": base(case_id, series_uid) + "/meta",
            "frame_url_template": base(case_id, series_uid) + "/instances/{sop_uid}/frames/{n}",
            "slices_url_template": base(case_id, series_uid) + "/slices/{slices}",
        }
        return JSONResponse(body, headers=_PRIVATE)

    @router.get("/cases/{case_id}/dicom/series/{series_uid}/meta")
    async def meta(case_id: str, series_uid: str, request: Request) -> Response:
        """The series' instances in display order, with what a viewer needs to draw them.

        Made once per opened series (the grant route opens it): once the grant has been
        seen, answered on the event loop without a thread hop, like the frames."""
        series = await granted_series(request, case_id, series_uid)
        return Response(
            series.meta_body(series_uid), media_type="application/json", headers=_FRAME_HEADERS
        )

    @router.get("/cases/{case_id}/dicom/series/{series_uid}/instances/{sop_uid}/frames/{n}")
    async def frame(
        case_id: str, series_uid: str, sop_uid: str, n: int, request: Request
    ) -> Response:
        """Raw little-endian pixels of frame ``n`` (from 1); no database access per frame.

        Run on the event loop, not in the thread pool: once the grant and the series have
        been seen, a frame is a sub-millisecond read and decryption, cheaper than the hop
        to a worker thread. The first request of a grant or series (one audit write, one
        index read) goes to a thread."""
        series = await granted_series(request, case_id, series_uid)
        data, _ = frame_bytes(series, sop_uid, n)
        return Response(data, media_type="application/octet-stream", headers=_FRAME_HEADERS)

    @router.get("/cases/{case_id}/dicom/series/{series_uid}/slices/{selection}")
    async def slices(case_id: str, series_uid: str, selection: str, request: Request) -> Response:
        """Several slices in one answer (``application/vnd.cpms.frames``, streamed): for each
        slice asked, in that order, its number and byte length as two little-endian uint32,
        then its raw pixels. The viewer's first slice comes alone; the rest in batches, the
        nearest first: one request per batch instead of one per frame."""
        series = await granted_series(request, case_id, series_uid)
        wanted = parse_slices(selection, len(series.slices))
        size = sum(series.slices[i][0].frame_bytes for i in wanted)
        if size > MAX_BATCH_BYTES:
            raise ValidationError("slices", f"at most {MAX_BATCH_BYTES >> 20} MiB per request")
        # a known length, not chunked: the proxy and the browser pass it through unframed
        headers = {**_FRAME_HEADERS, "Content-Length": str(size + _RECORD.size * len(wanted))}

        async def records() -> AsyncIterator[bytes]:
            # each frame is a sub-millisecond read: on the event loop, yielding between them
            for i in wanted:
                inst, n = series.slices[i]
                offset = inst.pixel_offset + (n - 1) * inst.frame_bytes
                data = store.read_blob(series.key, inst.pixel_blob_id, offset, inst.frame_bytes)
                yield _RECORD.pack(i, len(data)) + data

        return StreamingResponse(records(), media_type=SLICES_MEDIA_TYPE, headers=headers)

    @router.get(
        "/cases/{case_id}/dicom/series/{series_uid}/instances/{sop_uid}/frames/{n}/rendered"
    )
    def rendered(
        case_id: str,
        series_uid: str,
        sop_uid: str,
        n: int,
        request: Request,
        format: Literal["png", "jpeg"] = "png",  # noqa: A002 - the query parameter's name
    ) -> Response:
        """Frame ``n`` windowed to 8 bits, as a PNG or JPEG thumbnail (at most 512 px)."""
        claims = granted(request, case_id, series_uid)
        series = series_for(request, claims, case_id, series_uid)
        data, inst = frame_bytes(series, sop_uid, n)
        picture = render_frame(data, inst.view, format)
        return Response(picture, media_type=f"image/{format}", headers=_FRAME_HEADERS)

    return router
