"""DICOMweb (PS3.18) over a case's studies, at ``/cases/{case_id}/dicomweb``.

Standard clients (``dicomweb-client``, OHIF, 3D Slicer...) reach a case's de-identified
studies with the user's own token (``Authorization: token ...``); every request is
decided like the JSON API (``FILE_READ`` to search and retrieve, ``FILE_WRITE`` to
store) and audited, and a user who may not see the case gets 403 on every path.

* QIDO-RS (``application/dicom+json``), the six resources of PS3.18 Table 10.6.1-1:
  ``GET .../studies``, ``.../series`` and ``.../instances`` (every series or instance of
  the case, across its studies), ``.../studies/{study}/series``,
  ``.../studies/{study}/instances`` and ``.../studies/{study}/series/{series}/instances``.
  Matching on any attribute of the level or a level above (UID lists, wildcards, date
  and time ranges), ``fuzzymatching``, ``includefield`` (or ``all``), ``limit`` and
  ``offset``: see :mod:`.dicomweb_query`. The attributes come from the de-identified
  header of each study's first instance, each series' first instance or each instance
  (read decrypting only the header's segments, then kept in a bounded LRU), plus the
  counts and retrieve URLs; a series carries its study's, an instance its series' and
  study's. A bad query is 400 in the JSON error shape, with a ``Warning`` saying why.
* WADO-RS: ``GET`` a study, series or instance (``multipart/related;
  type="application/dicom"``, the stored de-identified files), their ``/metadata``
  (``application/dicom+json``, bulk data left out), and
  ``.../instances/{sop}/frames/{list}`` (``multipart/related;
  type="application/octet-stream"``: the decoded little-endian frames, as the viewer gets).
  ``Accept`` is honoured; what cannot be sent is 406 (:mod:`.dicomweb_accept`).
* STOW-RS: ``POST .../studies`` with ``multipart/related; type="application/dicom"``:
  each part is de-identified exactly like an import. The answer (PS3.18 10.5.3) lists
  stored instances in ``ReferencedSOPSequence`` and refused or held ones in
  ``FailedSOPSequence``: 200 all stored, 202 some, 409 none.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated

import anyio.from_thread
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydicom import dcmread
from starlette.concurrency import run_in_threadpool

from cpms_hub.domain import NotFoundError, ValidationError
from cpms_hub.policy import Action, Actor
from cpms_hub.state import State
from cpms_hub.store.dicom import DicomInstance

from .case_access import audit_context, case_policy
from .dicom_routes import dicom_store
from .dicomweb_accept import DICOM_JSON, negotiate
from .dicomweb_query import LEVEL_ALL, parse_query
from .errors import error_response
from .models import ErrorOut

__all__ = ["DICOMWEB_ROUTES_DOC", "dicomweb_router", "is_stow_path"]

_P = "/cases/{case_id}/dicomweb"
DICOMWEB_ROUTES_DOC: tuple[tuple[str, str], ...] = (
    ("GET", _P + "/studies"),
    ("POST", _P + "/studies"),
    ("GET", _P + "/studies/{study}"),
    ("GET", _P + "/studies/{study}/metadata"),
    ("GET", _P + "/series"),
    ("GET", _P + "/instances"),
    ("GET", _P + "/studies/{study}/series"),
    ("GET", _P + "/studies/{study}/instances"),
    ("GET", _P + "/studies/{study}/series/{series}"),
    ("GET", _P + "/studies/{study}/series/{series}/metadata"),
    ("GET", _P + "/studies/{study}/series/{series}/instances"),
    ("GET", _P + "/studies/{study}/series/{series}/instances/{sop}"),
    ("GET", _P + "/studies/{study}/series/{series}/instances/{sop}/metadata"),
    ("GET", _P + "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}"),
)

_ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 403, 404, 406, 409, 413, 415)}
_NO_STORE = {"Cache-Control": "private, no-store"}
_STOW_PATH = re.compile(r"/cases/[^/]+/dicomweb/studies/?$")
_MAX_PARTS = 10_000


#: study attributes counted over the whole study: ModalitiesInStudy, NumberOfStudyRelated
#: Series and Instances (a search that may return or match them reads the whole study)
_STUDY_COUNTS = frozenset({"00080061", "00201206", "00201208"})
#: values larger than this are bulk data, left out of metadata and search results
_BULK_BYTES = 64 * 1024
#: de-identified headers (DICOM JSON) kept by blob id: a search reads each one once
_HEADER_CACHE = 4096


@dataclass(frozen=True, slots=True)
class _Scope:
    """What a WADO-RS request names: a study, a series of it, or an instance of that."""

    study: str
    series: str | None = None
    sop: str | None = None


class _HeaderCache:
    """A bounded LRU of headers by blob id (a blob's content never changes)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, blob_id: str) -> dict | None:
        with self._lock:
            doc = self._entries.get(blob_id)
            if doc is not None:
                self._entries.move_to_end(blob_id)
            return doc

    def put(self, blob_id: str, doc: dict) -> None:
        with self._lock:
            self._entries[blob_id] = doc
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


def is_stow_path(path: str) -> bool:
    """Whether a request path is a STOW-RS upload (a large body, like a file upload)."""
    return bool(_STOW_PATH.search(path))


async def _actor(request: Request) -> Actor:
    return await request.app.state.cpms_auth.actor(request)


ActorDep = Annotated[Actor, Depends(_actor)]


def _attr(vr: str, *values: object) -> dict:
    present = [v for v in values if v not in (None, "")]
    return {"vr": vr, "Value": present} if present else {"vr": vr}


def _plain(value: object) -> object:
    """What orjson does not encode itself: a float subclass (pydicom's DS values)."""
    if isinstance(value, float):
        return float(value)
    raise TypeError(type(value).__name__)


def _warning(text: str) -> str:
    """One RFC 7234 warning value (code 299, as PS3.18 uses), printable ASCII only: the
    text may quote a parameter name the client sent."""
    safe = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)
    return f'299 cpms-store: "{safe[:200]}"'


def _bad_query(exc: ValidationError) -> JSONResponse:
    """PS3.18 10.6.3.1: an invalid search is 400 (Bad Request), in the one error shape."""
    response = error_response(400, "bad request", exc.reasons)
    response.headers["Warning"] = _warning(exc.reasons[0] if exc.reasons else "bad request")
    response.headers.update(_NO_STORE)
    return response


def _multipart(parts: Iterable[bytes], part_type: str) -> StreamingResponse:
    """A ``multipart/related`` answer, streamed: one instance in memory at a time."""
    boundary = uuid.uuid4().hex

    def body() -> Iterator[bytes]:
        for part in parts:
            yield f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode()
            yield part
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    media = f'multipart/related; type="{part_type}"; boundary={boundary}'
    return StreamingResponse(body(), media_type=media, headers=_NO_STORE)


def _parse_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The parts of a ``multipart/related`` body (RFC 2387), headers dropped."""
    media, *params = [p.strip() for p in content_type.split(";")]
    if media.lower() != "multipart/related":
        raise ValidationError("Content-Type", 'must be multipart/related; type="application/dicom"')
    boundary = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        raise ValidationError("Content-Type", "has no boundary")
    marker = b"--" + boundary.encode()
    chunks = body.split(marker)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if data.endswith(b"\r\n"):
            data = data[:-2]
        parts.append(data)
        if len(parts) > _MAX_PARTS:
            raise ValidationError("body", f"more than {_MAX_PARTS} parts")
    if not parts:
        raise ValidationError("body", "holds no DICOM part")
    return parts


def dicomweb_router(api_root: str, state: State) -> APIRouter:
    router = APIRouter(prefix=api_root + _P, responses=_ERRORS, tags=["dicomweb"])
    store = dicom_store(state)
    headers = _HeaderCache(_HEADER_CACHE)

    def find(
        request: Request,
        actor: Actor,
        case_id: str,
        action: str,
        *,
        study: str | None = None,
        series: str | None = None,
        sop: str | None = None,
        must_exist: bool = False,
    ) -> tuple[bytes, list[DicomInstance]]:
        key, found = store.instances(
            case_id,
            authorize=case_policy(actor, Action.FILE_READ),
            ctx=audit_context(request, actor.name),
            action=action,
            study_uid=study,
            series_uid=series,
            sop_uid=sop,
        )
        if must_exist and not found:
            raise NotFoundError("no such study, series or instance in this case")
        return key, found

    def dicom_json(body: list[dict], warnings: Iterable[str] = ()) -> Response:
        """A DICOM JSON answer (the caller has negotiated it before reading anything)."""
        headers = dict(_NO_STORE)
        if warnings:  # PS3.18 8.3.4: e.g. more results remain, a parameter is not supported
            headers["Warning"] = ", ".join(_warning(text) for text in warnings)
        # orjson: a search of a whole case is thousands of headers to encode
        return Response(orjson.dumps(body, default=_plain), media_type=DICOM_JSON, headers=headers)

    def base_url(case_id: str) -> str:
        return f"{api_root}/cases/{case_id}/dicomweb"

    def header(key: bytes, inst: DicomInstance) -> dict[str, dict]:
        """The de-identified header of an instance as DICOM JSON, bulk data left out."""
        cached = headers.get(inst.blob_id)
        if cached is not None:
            return cached
        with store.open_blob(key, inst.blob_id) as fh:
            ds = dcmread(fh, stop_before_pixels=True)
        doc = {
            tag: attr
            for tag, attr in ds.to_json_dict(
                bulk_data_threshold=_BULK_BYTES, bulk_data_element_handler=lambda _e: ""
            ).items()
            if "BulkDataURI" not in attr and "InlineBinary" not in attr
        }
        headers.put(inst.blob_id, doc)
        return doc

    def study_entity(case_id: str, key: bytes, uid: str, insts: list[DicomInstance]) -> dict:
        """A study's attributes: its first instance's study modules, counts and URL."""
        _, in_all = LEVEL_ALL["study"]
        entity = {t: a for t, a in header(key, insts[0]).items() if in_all(t)}
        modalities = sorted({i.modality for i in insts})
        entity.update(
            {
                "0020000D": _attr("UI", uid),
                "00080056": _attr("CS", "ONLINE"),
                "00080061": _attr("CS", *modalities),
                # Modality at the study level matches any series' modality
                "00080060": _attr("CS", *modalities),
                "00201206": _attr("IS", len({i.series_uid for i in insts})),
                "00201208": _attr("IS", len(insts)),
                "00081190": _attr("UR", f"{base_url(case_id)}/studies/{uid}"),
            }
        )
        return entity

    def series_entity(
        case_id: str, key: bytes, study: str, uid: str, insts: list[DicomInstance]
    ) -> dict:
        """A series' attributes: its first instance's series modules, count and URL."""
        _, in_all = LEVEL_ALL["series"]
        entity = {t: a for t, a in header(key, insts[0]).items() if in_all(t)}
        entity.update(
            {
                "0020000D": _attr("UI", study),
                "0020000E": _attr("UI", uid),
                "00080060": _attr("CS", insts[0].modality),
                "00201209": _attr("IS", len(insts)),
                "00081190": _attr("UR", f"{base_url(case_id)}/studies/{study}/series/{uid}"),
            }
        )
        return entity

    def instance_entity(case_id: str, key: bytes, inst: DicomInstance, upper: dict) -> dict:
        """An instance's attributes: its whole header (bulk data left out) and URL, over
        ``upper`` (its series' and study's)."""
        return {
            **upper,
            **header(key, inst),
            "00080056": _attr("CS", "ONLINE"),
            "00081190": _attr(
                "UR",
                f"{base_url(case_id)}/studies/{inst.study_uid}/series/{inst.series_uid}"
                f"/instances/{inst.sop_uid}",
            ),
        }

    def entities(
        case_id: str, key: bytes, found: list[DicomInstance], level: str, series: str | None
    ) -> Iterator[dict]:
        """The studies, series (of ``series`` only, if given) or instances of ``found``,
        each with the attributes of the levels above it; studies and series by UID."""
        tree: dict[str, dict[str, list[DicomInstance]]] = {}
        for inst in found:
            tree.setdefault(inst.study_uid, {}).setdefault(inst.series_uid, []).append(inst)
        for study_uid, in_study in sorted(tree.items()):
            insts = [i for series_insts in in_study.values() for i in series_insts]
            upper = study_entity(case_id, key, study_uid, insts)
            if level == "study":
                yield upper
                continue
            for uid, series_insts in sorted(in_study.items()):
                if series is not None and uid != series:
                    continue
                middle = {**upper, **series_entity(case_id, key, study_uid, uid, series_insts)}
                if level == "series":
                    yield middle
                    continue
                for inst in series_insts:
                    yield instance_entity(case_id, key, inst, middle)

    def qido(
        request: Request,
        actor: Actor,
        case_id: str,
        level: str,
        *,
        above: tuple[str, ...] = (),
        study: str | None = None,
        series: str | None = None,
    ) -> Response:
        """One QIDO-RS search (PS3.18 10.6) of the case's studies, series or instances
        (``level``), within ``study`` and ``series`` when the path names them.

        Each series carries its study's attributes and each instance its series' and
        study's, so the keys of the levels above match at every level; ``above`` names
        the levels whose default attributes a relational search returns too.
        """
        try:
            query = parse_query(request.query_params.multi_items(), level)
        except ValidationError as exc:
            return _bad_query(exc)  # before any read: a bad query costs nothing
        negotiate(request.headers.get("accept"), "json")
        # a key naming one study narrows what is read; the study's counts stay whole
        study = study or query.only_uid("0020000D")
        # an instance search names one series (path or key): read only that series, unless
        # the answer may need the counts of the whole study (a series' counts stay whole)
        series = series or (query.only_uid("0020000E") if level == "instance" else None)
        narrow = (
            series
            if level == "instance" and "study" not in above and not query.mentions(_STUDY_COUNTS)
            else None
        )
        key, found = find(request, actor, case_id, "dicomweb.search", study=study, series=narrow)
        project = query.projector(level, above)
        matched = [
            project(e) for e in entities(case_id, key, found, level, series) if query.matches(e)
        ]
        page, more = query.page(matched)
        return dicom_json(page, [*query.warnings, *([more] if more else [])])

    # -- QIDO-RS -----------------------------------------------------------

    @router.get("/studies")
    def search_studies(case_id: str, request: Request, actor: ActorDep) -> Response:
        return qido(request, actor, case_id, "study")

    @router.get("/series")
    def search_all_series(case_id: str, request: Request, actor: ActorDep) -> Response:
        return qido(request, actor, case_id, "series", above=("study",))

    @router.get("/instances")
    def search_all_instances(case_id: str, request: Request, actor: ActorDep) -> Response:
        return qido(request, actor, case_id, "instance", above=("study", "series"))

    @router.get("/studies/{study}/series")
    def search_series(case_id: str, study: str, request: Request, actor: ActorDep) -> Response:
        return qido(request, actor, case_id, "series", study=study)

    @router.get("/studies/{study}/instances")
    def search_study_instances(
        case_id: str, study: str, request: Request, actor: ActorDep
    ) -> Response:
        return qido(request, actor, case_id, "instance", above=("series",), study=study)

    @router.get("/studies/{study}/series/{series}/instances")
    def search_instances(
        case_id: str, study: str, series: str, request: Request, actor: ActorDep
    ) -> Response:
        return qido(request, actor, case_id, "instance", study=study, series=series)

    # -- WADO-RS -----------------------------------------------------------

    def wado(
        request: Request, actor: Actor, case_id: str, scope: _Scope, *, metadata: bool
    ) -> Response:
        """A study, series or instance (``scope``): its files, or their metadata."""
        accept = request.headers.get("accept")
        if metadata:
            negotiate(accept, "json")  # before any read: a 406 costs nothing
        key, found = find(
            request,
            actor,
            case_id,
            "dicomweb.metadata" if metadata else "dicomweb.retrieve",
            study=scope.study,
            series=scope.series,
            sop=scope.sop,
            must_exist=True,
        )
        if metadata:
            return dicom_json([header(key, inst) for inst in found])
        negotiate(accept, "instances", stored_syntaxes={i.transfer_syntax for i in found})
        files = (store.read_blob(key, inst.blob_id) for inst in found)
        return _multipart(files, "application/dicom")

    @router.get("/studies/{study}")
    def retrieve_study(case_id: str, study: str, request: Request, actor: ActorDep) -> Response:
        return wado(request, actor, case_id, _Scope(study), metadata=False)

    @router.get("/studies/{study}/metadata")
    def study_metadata(case_id: str, study: str, request: Request, actor: ActorDep) -> Response:
        return wado(request, actor, case_id, _Scope(study), metadata=True)

    @router.get("/studies/{study}/series/{series}")
    def retrieve_series(
        case_id: str, study: str, series: str, request: Request, actor: ActorDep
    ) -> Response:
        return wado(request, actor, case_id, _Scope(study, series), metadata=False)

    @router.get("/studies/{study}/series/{series}/metadata")
    def series_metadata(
        case_id: str, study: str, series: str, request: Request, actor: ActorDep
    ) -> Response:
        return wado(request, actor, case_id, _Scope(study, series), metadata=True)

    @router.get("/studies/{study}/series/{series}/instances/{sop}")
    def retrieve_instance(
        case_id: str, study: str, series: str, sop: str, request: Request, actor: ActorDep
    ) -> Response:
        return wado(request, actor, case_id, _Scope(study, series, sop), metadata=False)

    @router.get("/studies/{study}/series/{series}/instances/{sop}/metadata")
    def instance_metadata(
        case_id: str, study: str, series: str, sop: str, request: Request, actor: ActorDep
    ) -> Response:
        return wado(request, actor, case_id, _Scope(study, series, sop), metadata=True)

    @router.get("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}")
    def retrieve_frames(
        case_id: str,
        study: str,
        series: str,
        sop: str,
        frames: str,
        request: Request,
        actor: ActorDep,
    ) -> Response:
        negotiate(request.headers.get("accept"), "frames")
        try:
            numbers = [int(n) for n in frames.split(",")]
        except ValueError:
            raise ValidationError("frames", "is a comma-separated list of numbers") from None
        if len(numbers) > 10_000:
            raise ValidationError("frames", "at most 10000 frames per request")
        key, found = find(
            request,
            actor,
            case_id,
            "dicomweb.frames",
            study=study,
            series=series,
            sop=sop,
            must_exist=True,
        )
        inst = found[0]
        for n in numbers:
            if n < 1 or n > inst.frames:
                raise NotFoundError(f"frame numbers run from 1 to {inst.frames}")
        parts = (
            store.read_blob(
                key,
                inst.pixel_blob_id,
                inst.pixel_offset + (n - 1) * inst.frame_bytes,
                inst.frame_bytes,
            )
            for n in numbers
        )
        return _multipart(parts, "application/octet-stream")

    # -- STOW-RS -----------------------------------------------------------

    @router.post("/studies")
    async def stow(case_id: str, request: Request, actor: ActorDep) -> Response:
        """Store instances (multipart/related; type="application/dicom"), de-identified."""
        content_type = request.headers.get("content-type", "")
        stream = request.stream().__aiter__()

        def body_bytes() -> Iterator[bytes]:
            while True:
                try:
                    yield anyio.from_thread.run(stream.__anext__)
                except StopAsyncIteration:
                    return

        def run() -> tuple[int, dict]:
            authorize, ctx = (
                case_policy(actor, Action.FILE_WRITE),
                audit_context(request, actor.name),
            )
            # decided before the body is read: an outsider cannot make the service buffer it
            store.check_store(case_id, authorize=authorize, ctx=ctx)
            parts = _parse_multipart(b"".join(body_bytes()), content_type)
            report = store.store_payloads(case_id, parts, authorize=authorize, ctx=ctx)
            return _stow_answer(report, base_url(case_id))

        status, body = await run_in_threadpool(run)
        return JSONResponse(body, status_code=status, media_type=DICOM_JSON, headers=_NO_STORE)

    return router


def _stow_answer(report: dict, base: str) -> tuple[int, dict]:
    """PS3.18 10.5.3: ReferencedSOPSequence / FailedSOPSequence, and the status code."""
    referenced, failed = [], []
    for entry in report["instances"]:
        if entry["status"] == "stored":
            referenced.append(
                {
                    "00081155": _attr("UI", entry["sop_uid"]),
                    "00081190": _attr(
                        "UR",
                        f"{base}/studies/{entry.get('study_uid', '')}/series/"
                        f"{entry['series_uid']}/instances/{entry['sop_uid']}",
                    ),
                }
            )
        else:
            # PS3.18 Table I.2-1: 0xC000 "cannot understand" (refused or held back)
            failed.append(
                {
                    "00081155": _attr("UI", entry.get("sop_uid")),
                    "00081197": _attr("US", 0xC000),
                }
            )
    body: dict = {}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    status = 200 if not failed else (202 if referenced else 409)
    return status, body
