"""HTTP routes of chunked, resumable uploads (under ``/cases/{case_id}/uploads``).

The protocol borrows tus.io's header names (``Upload-Offset``, ``Upload-Length``) but is
much smaller; a client:

1. ``POST .../uploads`` with ``{"name", "size", "media_type"}`` → 201 and the upload's
   status, with ``chunk_size`` (the name travels in the body: names may identify a
   patient and never go in a URL);
2. ``PUT .../uploads/{upload_id}/chunk`` with ``Upload-Offset: <received>`` and exactly
   ``chunk_size`` raw bytes (fewer only for the final chunk) → the new status. A wrong
   offset is a 409 whose reasons say ``offset: expected <n>``;
3. after any failure, ``GET`` or ``HEAD .../uploads/{upload_id}`` → ``received`` (HEAD
   in the ``Upload-Offset`` header), and carries on from there;
4. ``POST .../uploads/{upload_id}/complete`` → 201 and the file, shaped like ``POST
   .../files``; repeating it returns the same file. ``DELETE .../uploads/{upload_id}``
   aborts instead.

All of it is authorised as :attr:`~cpms_hub.policy.Action.FILE_WRITE` on the case. The
chunk body is read in the event loop in batches of up to 1 MiB (one thread hop per batch,
not per network read) and handed to :meth:`UploadStore.append_chunk
<cpms_hub.store.uploads.UploadStore.append_chunk>`, which keeps at most one chunk in
memory. A body that stalls for ``idle_timeout`` seconds is given up, so a silently dead
connection frees its memory and thread. A request that finds another one writing the
same upload gets a 409 with ``Retry-After``.

The chunk route's path ends in ``/chunk`` (:data:`CHUNK_ROUTE_SUFFIX`) so the service's
body-size limit can give it a limit of one chunk rather than the small JSON limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import anyio
import anyio.from_thread
from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from cpms_hub.domain import CaseFile, CpmsError, ValidationError
from cpms_hub.policy import Action, Actor
from cpms_hub.store.cases import Authorize
from cpms_hub.store.uploads import UploadBusyError, UploadStatus, UploadStore

from .case_access import audit_context, case_policy
from .errors import error_response
from .models import ErrorOut, FileOut

__all__ = [
    "CHUNK_ROUTE_SUFFIX",
    "UPLOAD_ROUTES_DOC",
    "UploadCreate",
    "UploadOut",
    "upload_router",
]

#: the last path segment of the chunk route (exempted from the JSON body limit)
CHUNK_ROUTE_SUFFIX = "/chunk"

#: the routes this module adds (method, path below the API root), for ``ROUTES_DOC``
UPLOAD_ROUTES_DOC: tuple[tuple[str, str], ...] = (
    ("POST", "/cases/{case_id}/uploads"),
    ("GET", "/cases/{case_id}/uploads/{upload_id}"),
    ("HEAD", "/cases/{case_id}/uploads/{upload_id}"),
    ("DELETE", "/cases/{case_id}/uploads/{upload_id}"),
    ("PUT", "/cases/{case_id}/uploads/{upload_id}" + CHUNK_ROUTE_SUFFIX),
    ("POST", "/cases/{case_id}/uploads/{upload_id}/complete"),
)

_ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 403, 404, 409, 410, 413, 422)}
#: hand the body to the store thread in pieces of about this size
_BATCH = 1024 * 1024
#: seconds a client is told to wait when another request holds the upload
_RETRY_AFTER = "2"


class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    size: StrictInt = Field(ge=1)
    media_type: str = Field(default="application/octet-stream", min_length=3, max_length=100)


class UploadOut(BaseModel):
    id: str
    case_id: str
    size: int
    received: int
    chunk_size: int
    status: str


def _out(status: UploadStatus) -> dict:
    return UploadOut(**{k: getattr(status, k) for k in UploadOut.model_fields}).model_dump()


def _file_out(f: CaseFile) -> dict:
    return FileOut(**{k: getattr(f, k) for k in FileOut.model_fields}).model_dump(mode="json")


def _busy(exc: UploadBusyError) -> Response:
    resp = error_response(409, "conflict", exc.reasons)
    resp.headers["Retry-After"] = _RETRY_AFTER
    return resp


async def _drain(stream: AsyncIterator[bytes], limit: int, idle_timeout: float) -> None:
    """Read and drop what is left of a body, up to ``limit`` bytes (then give up)."""
    left = limit
    try:
        while left > 0:
            with anyio.fail_after(idle_timeout):
                left -= len(await stream.__anext__())
    except (StopAsyncIteration, TimeoutError, ClientDisconnect, RuntimeError):
        # finished, stalled, gone, or already consumed: nothing more to read
        pass


async def _actor(request: Request) -> Actor:
    # the same dependency as the app's ActorDep (not imported: app.py imports this module)
    return await request.app.state.cpms_auth.actor(request)


ActorDep = Annotated[Actor, Depends(_actor)]


def upload_router(
    api_root: str,
    uploads: UploadStore,
    *,
    idle_timeout: float = 60.0,
) -> APIRouter:
    """The upload routes, for ``app.include_router``."""
    router = APIRouter(prefix=api_root, responses=_ERRORS, tags=["uploads"])
    base = "/cases/{case_id}/uploads"
    one = base + "/{upload_id}"

    def write(actor: Actor) -> Authorize:
        return case_policy(actor, Action.FILE_WRITE)

    @router.post(base, status_code=201, response_model=UploadOut)
    def create_upload(
        case_id: str, body: UploadCreate, request: Request, response: Response, actor: ActorDep
    ) -> dict:
        """Declare a file of ``size`` bytes; send it with PUT ``.../chunk`` next."""
        status = uploads.create(
            case_id,
            name=body.name,
            size=body.size,
            media_type=body.media_type,
            authorize=write(actor),
            ctx=audit_context(request, actor.name),
        )
        response.headers["Location"] = f"{api_root}/cases/{case_id}/uploads/{status.id}"
        return _out(status)

    @router.get(one, response_model=UploadOut)
    def upload_status(case_id: str, upload_id: str, request: Request, actor: ActorDep) -> dict:
        """How many bytes arrived (``received``): where to resume."""
        status = uploads.status(
            case_id, upload_id, authorize=write(actor), ctx=audit_context(request, actor.name)
        )
        return _out(status)

    @router.head(one)
    def upload_offset(case_id: str, upload_id: str, request: Request, actor: ActorDep) -> Response:
        """The status in headers: ``Upload-Offset``, ``Upload-Length``, ``Upload-Status``."""
        status = uploads.status(
            case_id, upload_id, authorize=write(actor), ctx=audit_context(request, actor.name)
        )
        return Response(
            status_code=200,
            headers={
                "Upload-Offset": str(status.received),
                "Upload-Length": str(status.size),
                "Upload-Status": status.status,
                "Cache-Control": "no-store",
            },
        )

    @router.delete(one, status_code=204)
    def abort_upload(case_id: str, upload_id: str, request: Request, actor: ActorDep) -> Response:
        """Abort: the partial data is deleted (a completed file is not affected)."""
        uploads.abort(
            case_id, upload_id, authorize=write(actor), ctx=audit_context(request, actor.name)
        )
        return Response(status_code=204)

    @router.put(one + CHUNK_ROUTE_SUFFIX, response_model=UploadOut)
    async def put_chunk(
        case_id: str,
        upload_id: str,
        request: Request,
        actor: ActorDep,
        response: Response,
        upload_offset: Annotated[int, Header(ge=0)],
        content_length: Annotated[int | None, Header(ge=0)] = None,
    ) -> Response | dict:
        """The chunk at ``Upload-Offset`` as the raw body (``application/octet-stream``)."""
        stream = request.stream().__aiter__()

        async def next_batch() -> bytes:
            parts: list[bytes] = []
            size = 0
            while size < _BATCH:
                try:
                    # per network read: a stalled client is given up, a slow one is not
                    with anyio.fail_after(idle_timeout):
                        piece = await stream.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise ValidationError(
                        "chunk", f"no data for {idle_timeout:g} s; request given up"
                    ) from None
                except ClientDisconnect:
                    raise ValidationError("chunk", "the connection closed mid-chunk") from None
                parts.append(piece)
                size += len(piece)
            return b"".join(parts)

        def body() -> Iterator[bytes]:
            while batch := anyio.from_thread.run(next_batch):
                yield batch

        try:
            status = await run_in_threadpool(
                uploads.append_chunk,
                case_id,
                upload_id,
                upload_offset,
                body(),
                authorize=write(actor),
                ctx=audit_context(request, actor.name),
                length=content_length,
            )
        except CpmsError as exc:
            # Refused before the body was read (wrong offset, busy, denied): read the rest
            # first, so that the connection stays usable for the client's next request
            # rather than being closed under a request it already sent on it.
            await _drain(stream, uploads.chunk_size, idle_timeout)
            if isinstance(exc, UploadBusyError):
                return _busy(exc)
            raise
        response.headers["Upload-Offset"] = str(status.received)
        return _out(status)

    @router.post(one + "/complete", status_code=201, response_model=FileOut)
    def complete_upload(
        case_id: str, upload_id: str, request: Request, actor: ActorDep
    ) -> Response | dict:
        """Finish: the file joins the case (same shape as POST ``.../files``)."""
        try:
            f = uploads.complete(
                case_id, upload_id, authorize=write(actor), ctx=audit_context(request, actor.name)
            )
        except UploadBusyError as exc:
            return _busy(exc)
        return _file_out(f)

    return router
