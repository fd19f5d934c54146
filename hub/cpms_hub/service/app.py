"""The case-store web service: JSON over HTTP under ``/services/cpms-store/api/v1``.

The hub starts this service and routes ``/services/cpms-store/`` to it. Each
request is authenticated (:mod:`.auth`), decided by :func:`cpms_hub.policy.decide`
and carried out by the store, which writes the audit entry in the same
transaction. Routes are synchronous functions (run in a thread pool) because
the store is; only authentication, which waits on the hub, is async.

Routes are listed in :data:`ROUTES_DOC` so that a test can check each one is
documented in the README and present in the OpenAPI document.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any
from urllib.parse import unquote

import anyio.from_thread
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp

from cpms_hub.domain import (
    Account,
    Case,
    CaseContent,
    CaseDraft,
    CaseFile,
    ConsentScope,
    ConsentState,
    NotFoundError,
    Role,
    ValidationError,
)
from cpms_hub.domain.codec import consent_to_json, content_from_json, content_to_json
from cpms_hub.exports import fhir_bundle, phenopacket
from cpms_hub.hubapi import HubApi, HubApiError
from cpms_hub.policy import Action, Actor
from cpms_hub.state import State
from cpms_hub.store import session_scope
from cpms_hub.store.uploads import CHUNK_SIZE

from .auth import XSRF_COOKIE, Authenticator
from .case_access import audit_context, case_policy, require
from .clinical_checks import submission_problems, vocabulary_problems
from .dicom_routes import DICOM_ROUTES_DOC
from .dicomweb_routes import DICOMWEB_ROUTES_DOC, is_stow_path
from .errors import error_response, install_error_handlers
from .followup_routes import FOLLOWUP_ROUTES_DOC
from .grants import GRANT_HEADER
from .hot_routes import HotCaseReads
from .models import (
    AccountOut,
    AuditOut,
    CaseCreate,
    CaseOut,
    CaseUpdate,
    ConsentIn,
    ContentIn,
    ErrorOut,
    FileOut,
    MemberOut,
    MeOut,
    PseudonymLookup,
    WithdrawIn,
)
from .review_routes import REVIEW_ROUTES_DOC
from .tile_path import StoredTilePath
from .upload_routes import CHUNK_ROUTE_SUFFIX, upload_router

__all__ = ["create_app", "ROUTES_DOC"]

log = logging.getLogger("cpms.store")

#: every route of the API (method, path below the API root); the README documents each
ROUTES_DOC: tuple[tuple[str, str], ...] = (
    ("GET", "/health"),
    ("GET", "/openapi.json"),
    ("GET", "/me"),
    ("GET", "/cases"),
    ("POST", "/cases"),
    ("POST", "/cases/lookup"),
    ("GET", "/cases/{case_id}"),
    ("PATCH", "/cases/{case_id}"),
    ("GET", "/cases/{case_id}/files"),
    ("POST", "/cases/{case_id}/files"),
    ("GET", "/cases/{case_id}/files/{file_id}"),
    ("POST", "/cases/{case_id}/uploads"),
    ("GET", "/cases/{case_id}/uploads/{upload_id}"),
    ("HEAD", "/cases/{case_id}/uploads/{upload_id}"),
    ("DELETE", "/cases/{case_id}/uploads/{upload_id}"),
    ("PUT", "/cases/{case_id}/uploads/{upload_id}/chunk"),
    ("POST", "/cases/{case_id}/uploads/{upload_id}/complete"),
    ("PUT", "/cases/{case_id}/content"),
    ("GET", "/cases/{case_id}/consents"),
    ("POST", "/cases/{case_id}/consents"),
    ("POST", "/cases/{case_id}/consents/{consent_id}/withdraw"),
    ("POST", "/cases/{case_id}/submit"),
    ("GET", "/cases/{case_id}/export/fhir"),
    ("GET", "/cases/{case_id}/export/phenopacket"),
    ("GET", "/accounts"),
    ("POST", "/accounts/{name}/{verb}"),
    ("GET", "/audit"),
    ("POST", "/vocab/hpo/search"),
    ("GET", "/vocab/hpo/{hpo_id}"),
    ("POST", "/vocab/orpha/search"),
    ("POST", "/vocab/icd10/search"),
    ("POST", "/vocab/hgvs/check"),
    ("GET", "/cases/{case_id}/slides"),
    ("POST", "/cases/{case_id}/slides"),
    ("POST", "/cases/{case_id}/slides/{slide_id}/grant"),
    ("GET", "/cases/{case_id}/slides/{slide_id}/dzi"),
    ("GET", "/cases/{case_id}/slides/{slide_id}/tiles/{level}/{col}_{row}.jpeg"),
    ("GET", "/cases/{case_id}/slides/{slide_id}/properties"),
    ("GET", "/cases/{case_id}/slides/{slide_id}/associated"),
    ("POST", "/analysis/cohort"),
    ("POST", "/analysis/report"),
    ("POST", "/analysis/similar"),
    ("GET", "/exports/registry.csv"),
    *DICOM_ROUTES_DOC,
    *DICOMWEB_ROUTES_DOC,
    ("GET", "/cases/{case_id}/annotations"),
    ("GET", "/cases/{case_id}/slides/{slide_id}/annotations"),
    ("POST", "/cases/{case_id}/slides/{slide_id}/annotations"),
    ("DELETE", "/cases/{case_id}/slides/{slide_id}/annotations/{annotation_id}"),
    *REVIEW_ROUTES_DOC,
    *FOLLOWUP_ROUTES_DOC,
)

_PRIVATE = {"Cache-Control": "private, no-store"}
_ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 403, 404, 409, 410, 413, 422)}
_ACCOUNT_VERBS = ("approve", "reject", "disable", "enable", "reset-mfa")


def _case_out(case: Case) -> dict:
    return _case_model(case).model_dump(mode="json")


def _case_model(case: Case) -> CaseOut:
    return CaseOut(
        id=case.id,
        owner=case.owner,
        hospital=case.hospital,
        network=case.network,
        status=case.status.value,
        title=case.title,
        clinical_summary=case.clinical_summary,
        created_at=case.created_at,
        updated_at=case.updated_at,
        members=[
            MemberOut(user=m.user, role=m.role.value, added_at=m.added_at) for m in case.members
        ],
        consent={
            "granted": sorted(s.value for s in case.consent),
            "withdrawn": sorted(s.value for s in case.consent_withdrawn),
        },
        content=content_to_json(case.content) if case.content is not None else None,
    )


def _etags(header: str) -> set[str]:
    """The entity tags of an ``If-None-Match`` header (weak ones compare as strong)."""
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


def _file_out(f: CaseFile) -> dict:
    return FileOut(**{k: getattr(f, k) for k in FileOut.model_fields}).model_dump(mode="json")


def _scope(value: str) -> ConsentScope:
    try:
        return ConsentScope(value)
    except ValueError:
        allowed = ", ".join(s.value for s in ConsentScope)
        raise ValidationError("scopes", f"must be among {allowed}") from None


def _account_out(a: Account) -> dict:
    return AccountOut(
        name=a.name,
        email=a.email,
        full_name=a.full_name,
        hospital=a.hospital,
        network=a.network,
        roles=sorted(r.value for r in a.roles),
        status=a.status.value,
        mfa_enrolled=a.mfa_enrolled,
        created_at=a.created_at,
    ).model_dump(mode="json")


async def current_actor(request: Request) -> Actor:
    return await request.app.state.cpms_auth.actor(request)


ActorDep = Annotated[Actor, Depends(current_actor)]


class _BodyLimit:
    """Refuse bodies over the limit with 413 before reading them (pure ASGI)."""

    def __init__(self, app, *, json_limit: int, file_limit: int, chunk_limit: int) -> None:  # noqa: ANN001
        self.app = app
        self.json_limit = json_limit
        self.file_limit = file_limit
        self.chunk_limit = chunk_limit

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            path = scope["path"]
            if path.endswith("/files") or is_stow_path(path):
                limit = self.file_limit
            elif scope["method"] == "PUT" and path.endswith(CHUNK_ROUTE_SUFFIX):
                limit = self.chunk_limit
            else:
                limit = self.json_limit
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                resp = error_response(
                    413, "request body too large", [f"body: at most {limit} bytes accepted"]
                )
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _StoreApp(FastAPI):
    """FastAPI, with the hottest requests answered in front of its middleware stack.

    Each of ``fast_paths`` wraps the built stack (the first one outermost): a pure ASGI
    app that answers the steady state of one route itself and hands everything else on
    (:class:`.hot_routes.HotCaseReads`, :class:`.tile_path.StoredTilePath`). For those
    requests the middlewares, the route matching and the dependency solving cost more
    than the work itself; every other request goes through the stack as usual.
    """

    fast_paths: tuple[Callable[[ASGIApp], ASGIApp], ...] = ()

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        for wrap in reversed(self.fast_paths):
            stack = wrap(stack)
        return stack


def create_app(
    state: State,
    hub_auth,  # noqa: ANN001 - jupyterhub.services.auth.HubOAuth
    *,
    service_prefix: str = "/services/cpms-store/",
    hub_api: HubApi | None = None,
    max_file_bytes: int = 2 * 1024**3 + 1024**2,
) -> FastAPI:
    api_root = service_prefix + "api/v1"
    app = _StoreApp(
        title="CPMS case store",
        version="1",
        openapi_url=api_root + "/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    auth = Authenticator(hub_auth, state.accounts, service_prefix=service_prefix)
    app.state.cpms_auth = auth
    store = state.cases
    router = APIRouter(prefix=api_root, responses=_ERRORS)

    @router.get("/health", tags=["service"])
    async def health() -> dict:
        """Liveness; needs no credentials and touches no data."""
        # on the event loop: an empty route has nothing to hand a worker thread, and the
        # benchmarks take this route as the framework's floor
        return {"status": "ok"}

    @router.get("/me", response_model=MeOut, tags=["service"])
    def me(actor: ActorDep) -> dict:
        return {
            "name": actor.name,
            "roles": sorted(r.value for r in actor.roles),
            "hospital": actor.hospital,
            "network": actor.network,
            "scopes": sorted(actor.scopes),
        }

    @router.post("/cases", status_code=201, response_model=CaseOut, tags=["cases"])
    def create_case(body: CaseCreate, request: Request, actor: ActorDep) -> dict:
        ctx = audit_context(request, actor.name)
        require(store, actor, Action.CASE_CREATE, ctx)
        draft = CaseDraft(body.title, body.clinical_summary, body.network)
        content = None
        if body.content is not None:
            # checked before anything is written: a refused case leaves no empty draft
            content = content_from_json(body.content.model_dump())
            problems = vocabulary_problems(content)
            if problems:
                raise ValidationError.of(problems)
        case = store.create_case(
            draft,
            owner=actor.name,
            hospital=actor.hospital,
            network=actor.network,
            ctx=ctx,
            pseudonym=body.pseudonym,
            content=content,
        )
        return _case_out(case)

    @router.get("/cases", response_model=list[CaseOut], tags=["cases"])
    def list_cases(request: Request, response: Response, actor: ActorDep) -> Any:
        """The cases the caller may read, with an ETag: ``If-None-Match`` with the current
        one answers 304 without listing (and so without an audit entry per case)."""
        ctx = audit_context(request, actor.name)
        require(store, actor, Action.CASE_LIST, ctx)
        network = actor.network if Role.COORDINATOR in actor.roles else None
        authorize = case_policy(actor, Action.CASE_READ)
        # taken before the list: a change in between makes the tag stale, never the list
        fingerprint = store.list_fingerprint(user=actor.name, network=network, authorize=authorize)
        etag = f'"{fingerprint}"'
        if etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers={"ETag": etag})
        cases = store.list_cases(user=actor.name, network=network, authorize=authorize, ctx=ctx)
        response.headers["ETag"] = etag
        return [_case_out(c) for c in cases]

    @router.post("/cases/lookup", response_model=list[CaseOut], tags=["cases"])
    def lookup(body: PseudonymLookup, request: Request, actor: ActorDep) -> list[dict]:
        """Exact look-up by pseudonym (in the body: pseudonyms never go in URLs)."""
        ctx = audit_context(request, actor.name)
        require(store, actor, Action.CASE_LOOKUP, ctx)
        found = store.lookup_pseudonym(
            body.pseudonym, authorize=case_policy(actor, Action.CASE_READ), ctx=ctx
        )
        return [_case_out(c) for c in found]

    # SQLite reads are served on the event loop (see CaseStore.read_case_async); a database
    # server's are not: there a statement waits on the network, so it runs in a worker thread
    reads_on_loop = state.engine.dialect.name == "sqlite"

    async def read_case_response(case_id: str, request: Request) -> Response:
        # the caller identified here, not as a dependency: HotCaseReads calls this directly
        who = await auth.identity(request)
        ctx = audit_context(request, who.name)
        if reads_on_loop:
            actor = auth.actor_of(who)
            case = await store.read_case_async(
                case_id, authorize=case_policy(actor, Action.CASE_READ), ctx=ctx
            )
        else:

            def read() -> Case:
                actor = auth.actor_of(who)
                return store.read_case(
                    case_id, authorize=case_policy(actor, Action.CASE_READ), ctx=ctx
                )

            case = await run_in_threadpool(read)
        # serialised once, here: the body is a CaseOut already, no second validation pass
        return Response(_case_model(case).model_dump_json(), media_type="application/json")

    @router.get("/cases/{case_id}", response_model=CaseOut, tags=["cases"])
    async def read_case(case_id: str, request: Request) -> Response:
        """One case, decrypted, if policy allows (every read audited, allowed or not).

        Served by :class:`~.hot_routes.HotCaseReads` before FastAPI's routing; this
        route documents it and answers whatever that middleware leaves to FastAPI."""
        return await read_case_response(case_id, request)

    @router.patch("/cases/{case_id}", response_model=CaseOut, tags=["cases"])
    def update_case(case_id: str, body: CaseUpdate, request: Request, actor: ActorDep) -> dict:
        case = store.update_case(
            case_id,
            title=body.title,
            clinical_summary=body.clinical_summary,
            authorize=case_policy(actor, Action.CASE_UPDATE),
            ctx=audit_context(request, actor.name),
        )
        return _case_out(case)

    @router.get("/cases/{case_id}/files", response_model=list[FileOut], tags=["files"])
    def list_files(case_id: str, request: Request, actor: ActorDep) -> list[dict]:
        files = store.list_files(
            case_id,
            authorize=case_policy(actor, Action.FILE_READ),
            ctx=audit_context(request, actor.name),
        )
        return [_file_out(f) for f in files]

    @router.post("/cases/{case_id}/files", status_code=201, response_model=FileOut, tags=["files"])
    async def upload_file(
        case_id: str,
        request: Request,
        actor: ActorDep,
        x_cpms_filename: Annotated[str, Header(min_length=1, max_length=1024)],
        content_type: Annotated[str, Header()] = "application/octet-stream",
    ) -> dict:
        """Stream the raw body into an encrypted blob; the name comes percent-encoded
        in ``X-CPMS-Filename`` (file names may identify a patient: not in the URL)."""
        name = unquote(x_cpms_filename)
        stream = request.stream().__aiter__()

        def chunks() -> Iterator[bytes]:
            while True:
                try:
                    chunk = anyio.from_thread.run(stream.__anext__)
                except StopAsyncIteration:
                    return
                if chunk:
                    yield chunk

        f = await run_in_threadpool(
            store.add_file,
            case_id,
            chunks(),
            name=name,
            media_type=content_type.split(";")[0].strip() or "application/octet-stream",
            max_size=max_file_bytes,
            authorize=case_policy(actor, Action.FILE_WRITE),
            ctx=audit_context(request, actor.name),
        )
        return _file_out(f)

    @router.get("/cases/{case_id}/files/{file_id}", tags=["files"])
    def download_file(case_id: str, file_id: str, request: Request, actor: ActorDep):  # noqa: ANN201
        meta, reader = store.open_file(
            case_id,
            file_id,
            authorize=case_policy(actor, Action.FILE_READ),
            ctx=audit_context(request, actor.name),
        )

        def body() -> Iterator[bytes]:
            with reader:
                while chunk := reader.read(1024 * 1024):
                    yield chunk

        return StreamingResponse(
            body(),
            media_type=meta.media_type,
            headers={
                "Content-Length": str(meta.size),
                "Cache-Control": "private, no-store",
                "X-Content-Type-Options": "nosniff",
                "Content-Disposition": "attachment",
            },
        )

    @router.put("/cases/{case_id}/content", response_model=CaseOut, tags=["cases"])
    def put_content(case_id: str, body: ContentIn, request: Request, actor: ActorDep) -> dict:
        """Replace the clinical content; every code must exist (drafts may be incomplete)."""
        content = content_from_json(body.model_dump())
        problems = vocabulary_problems(content)
        if problems:
            raise ValidationError.of(problems)
        case = store.set_content(
            case_id,
            content,
            authorize=case_policy(actor, Action.CASE_UPDATE),
            ctx=audit_context(request, actor.name),
        )
        return _case_out(case)

    @router.get("/cases/{case_id}/consents", tags=["consent"])
    def list_consents(case_id: str, request: Request, actor: ActorDep) -> dict:
        consents = store.list_consents(
            case_id,
            authorize=case_policy(actor, Action.CONSENT_READ),
            ctx=audit_context(request, actor.name),
        )
        state = ConsentState.of(consents)
        return {
            "granted": sorted(s.value for s in state.granted),
            "withdrawn": sorted(s.value for s in state.withdrawn),
            "blocking_submission": list(state.blocking_submission()),
            "consents": [consent_to_json(c) for c in consents],
        }

    @router.post("/cases/{case_id}/consents", status_code=201, tags=["consent"])
    def record_consent(case_id: str, body: ConsentIn, request: Request, actor: ActorDep) -> dict:
        scopes = frozenset(_scope(s) for s in body.scopes)
        consent = store.record_consent(
            case_id,
            scopes=scopes,
            form_version=body.form_version,
            language=body.language,
            signed_on=body.signed_on,
            form_file_id=body.form_file_id,
            authorize=case_policy(actor, Action.CONSENT_WRITE),
            ctx=audit_context(request, actor.name),
        )
        return consent_to_json(consent)

    @router.post("/cases/{case_id}/consents/{consent_id}/withdraw", tags=["consent"])
    def withdraw_consent(
        case_id: str, consent_id: str, body: WithdrawIn, request: Request, actor: ActorDep
    ) -> dict:
        consent = store.withdraw_consent(
            case_id,
            consent_id,
            scope=_scope(body.scope),
            reason=body.reason,
            on=body.on or datetime.now(UTC).date(),
            authorize=case_policy(actor, Action.CONSENT_WRITE),
            ctx=audit_context(request, actor.name),
        )
        return consent_to_json(consent)

    @router.post("/cases/{case_id}/submit", response_model=CaseOut, tags=["cases"])
    def submit(case_id: str, request: Request, actor: ActorDep) -> dict:
        """Validate everything; submit, or list every problem by field (422)."""
        case = store.submit(
            case_id,
            problems=submission_problems,
            authorize=case_policy(actor, Action.CASE_SUBMIT),
            ctx=audit_context(request, actor.name),
        )
        return _case_out(case)

    @router.get("/cases/{case_id}/export/fhir", tags=["exports"])
    def export_fhir(case_id: str, request: Request, actor: ActorDep) -> JSONResponse:
        """The case as a FHIR R4 Bundle (pseudonymised Patient, Conditions, Observations,
        Consent, DocumentReferences); owner and assistants only."""
        case, consents, files = store.export_view(
            case_id,
            fmt="fhir",
            authorize=case_policy(actor, Action.CASE_EXPORT),
            ctx=audit_context(request, actor.name),
        )
        try:
            outcome, _ = state.review.outcome(
                case_id,
                authorize=case_policy(actor, Action.OUTCOME_READ),
                ctx=audit_context(request, actor.name),
            )
        except NotFoundError:
            outcome = None
        bundle = fhir_bundle(case, case.content or CaseContent(), consents, files, outcome=outcome)
        return JSONResponse(bundle, media_type="application/fhir+json", headers=_PRIVATE)

    @router.get("/cases/{case_id}/export/phenopacket", tags=["exports"])
    def export_phenopacket(case_id: str, request: Request, actor: ActorDep) -> JSONResponse:
        """The case as a GA4GH Phenopacket v2; owner and assistants only."""
        case, _, files = store.export_view(
            case_id,
            fmt="phenopacket",
            authorize=case_policy(actor, Action.CASE_EXPORT),
            ctx=audit_context(request, actor.name),
        )
        return JSONResponse(
            phenopacket(case, case.content or CaseContent(), files), headers=_PRIVATE
        )

    def _hub_sync(fn) -> None:  # noqa: ANN001
        if hub_api is None:
            return
        try:
            fn(hub_api)
        except HubApiError as exc:
            # the account table is authoritative and already changed; the hub catches up later
            log.warning("hub not updated: %s", exc)

    @router.get("/accounts", response_model=list[AccountOut], tags=["accounts"])
    def list_accounts(
        request: Request, actor: ActorDep, status: Annotated[str | None, Query()] = None
    ) -> list[dict]:
        require(store, actor, Action.ACCOUNT_MANAGE, audit_context(request, actor.name))
        accounts = state.accounts.list()
        if status is not None:
            accounts = [a for a in accounts if a.status.value == status]
        return [_account_out(a) for a in accounts]

    @router.post("/accounts/{name}/{verb}", response_model=AccountOut, tags=["accounts"])
    def account_action(name: str, verb: str, request: Request, actor: ActorDep) -> dict:
        ctx = audit_context(request, actor.name)
        require(store, actor, Action.ACCOUNT_MANAGE, ctx)
        if verb not in _ACCOUNT_VERBS:
            raise ValidationError("verb", f"must be one of {', '.join(_ACCOUNT_VERBS)}")
        method = getattr(state.accounts, verb.replace("-", "_"))
        account = method(name, by=actor.name)
        if verb in ("approve", "enable"):
            _hub_sync(lambda h: h.set_groups(name, account.roles))
        elif verb == "disable":
            _hub_sync(lambda h: h.revoke_everything(name))
        return _account_out(account)

    @router.get("/audit", response_model=list[AuditOut], tags=["audit"])
    def audit(
        request: Request,
        actor: ActorDep,
        case_id: Annotated[str | None, Query(max_length=36)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[dict]:
        require(store, actor, Action.AUDIT_READ, audit_context(request, actor.name))
        with session_scope(state.sessions, write=False) as s:
            entries = state.audit.entries(s, case_id=case_id, limit=limit)
        return [
            AuditOut(**{k: getattr(e, k) for k in AuditOut.model_fields}).model_dump(mode="json")
            for e in entries
        ]

    from .slide_routes import TILE_HEADERS, slide_routers

    slides, slide_tiles, stored_tile = slide_routers(api_root, state)
    # a notebook reads cases, a viewer fetches hundreds of tiles a minute
    app.fast_paths = (
        partial(HotCaseReads, cases_prefix=api_root + "/cases/", handler=read_case_response),
        partial(
            StoredTilePath,
            api_root=api_root,
            ready=stored_tile,
            headers=TILE_HEADERS.items(),
            grant_header=GRANT_HEADER,
        ),
    )
    # the tile and slide descriptor routes are matched first (hidden copies: the OpenAPI
    # document lists them with the other slide routes): a viewer fetches hundreds of
    # tiles a minute, and each route matched before them costs every tile a regex match
    app.include_router(slide_tiles)
    app.include_router(router)
    # imported here: vocab_routes takes ActorDep from this module
    from .vocab_routes import vocab_router

    app.include_router(vocab_router(api_root))
    app.include_router(upload_router(api_root, state.uploads))
    app.include_router(slides)
    from .analysis_routes import analysis_router

    app.include_router(analysis_router(api_root, state))
    from .dicom_routes import dicom_router
    from .dicomweb_routes import dicomweb_router

    app.include_router(dicom_router(api_root, state))
    app.include_router(dicomweb_router(api_root, state))
    from .annotation_routes import annotation_router

    app.include_router(annotation_router(api_root, state))
    from .review_routes import review_router

    app.include_router(review_router(api_root, state))
    from .followup_routes import followup_router

    app.include_router(followup_router(api_root, state))

    @app.get(service_prefix + "oauth_login", include_in_schema=False)
    def oauth_login(next: str = "") -> RedirectResponse:  # noqa: A002 - OAuth's own name
        url, cookie = auth.login_redirect(auth.safe_next(next))
        resp = RedirectResponse(url, status_code=302)
        resp.set_cookie(
            "cpms-oauth-state",
            cookie,
            max_age=600,
            httponly=True,
            samesite="lax",
            path=service_prefix,
        )
        return resp

    @app.get(service_prefix + "oauth_callback", include_in_schema=False)
    async def oauth_callback(request: Request, code: str = "", state: str = ""):  # noqa: ANN202
        kept = request.cookies.get("cpms-oauth-state", "")
        kept_state, _, next_url = kept.partition("|")
        if not code or not state or not kept_state or kept_state != state:
            return error_response(403, "OAuth state mismatch", ["restart the login"])
        token = await hub_auth.token_for_code(code, sync=False)
        resp = RedirectResponse(auth.safe_next(next_url), status_code=302)
        resp.set_cookie(
            hub_auth.cookie_name, token, httponly=True, samesite="lax", path=service_prefix
        )
        resp.set_cookie(XSRF_COOKIE, secrets.token_urlsafe(24), samesite="strict", path="/")
        resp.delete_cookie("cpms-oauth-state", path=service_prefix)
        return resp

    @app.exception_handler(404)
    async def _not_found(_: Request, __: Exception) -> JSONResponse:
        return error_response(404, "not found", ["no such route"])

    app.add_middleware(
        _BodyLimit,
        json_limit=state.settings.max_body_bytes,
        file_limit=max_file_bytes,
        chunk_limit=CHUNK_SIZE,
    )
    return app
