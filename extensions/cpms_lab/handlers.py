"""Same-origin endpoints of the case desk under ``<base_url>/cpms/api/``.

Every handler requires a signed-in Jupyter user (the hub's OAuth cookie or a
token; non-GET requests also pass Jupyter's XSRF check) and then calls the
store as this server's owner through :class:`~cpms_lab.gateway.StoreGateway`.
A request nobody signed in for is a 401; Jupyter's refusals (XSRF, not
authorised) are 403s. Errors keep CPMS's one shape ``{status, error,
reasons}``; the store's own refusals pass through with its status and
reasons. Nothing here logs a case's content, and case ids travel only as path
segments (they are random ids, not patient data).

========================================  ======  ==========================================
route                                     method  what
========================================  ======  ==========================================
``cpms/api/cases``                        GET     the user's cases, one summary each
``cpms/api/cases/<id>``                   GET     one case's summary, files and slides
``cpms/api/cases/<id>/outcome.pdf``       GET     the signed outcome PDF (inline)
``cpms/api/notifications``                GET     ``{available, notifications}``
``cpms/api/notifications/<id>/read``      POST    mark one notification read
``cpms/api/new-case-notebook``            POST    a new notebook from the template
``cpms/api/case-notebook/<id>``           POST    the notebook bound to a case
========================================  ======  ==========================================
"""

from __future__ import annotations

import hashlib
import json
import os
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import ensure_async, url_path_join
from tornado import web

from .case_notebooks import CASES_FOLDER, case_notebook, new_case_notebook
from .gateway import StoreGateway, StoreRefusal, case_path
from .summaries import case_summary, notification_item

__all__ = ["setup_handlers", "ROUTES"]

#: the resource name Jupyter's authorizer sees for every desk request
AUTH_RESOURCE = "cpms"
_CASE_ID = r"(?P<case_id>[^/]+)"
_NOTE_ID = r"(?P<notification_id>[^/]+)"
#: where the last case list and its ETag are kept (the web app's settings: one per server)
_LIST_CACHE = "cpms_lab_case_list"


def hub_base_url() -> str:
    """The hub's base URL (``/`` unless the hub runs below a prefix); the hub sets it."""
    return os.environ.get("JUPYTERHUB_BASE_URL") or "/"


class DeskHandler(APIHandler):
    """Signed-in users only; errors in CPMS's shape."""

    auth_resource = AUTH_RESOURCE

    async def prepare(self) -> None:
        await ensure_async(super().prepare())
        if self.current_user is None:
            # "who are you?" is a 401; @web.authenticated below stays as a second lock
            raise web.HTTPError(401, "sign in to this Jupyter server first")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        try:
            phrase = HTTPStatus(status_code).phrase.lower()
        except ValueError:
            phrase = "error"
        if isinstance(exc, web.HTTPError) and exc.log_message:
            reasons = [exc.log_message % exc.args if exc.args else exc.log_message]
        else:
            reasons = [phrase]  # an unexpected exception's text stays in the server log
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "error": phrase, "reasons": reasons}))

    def refuse(self, refusal: StoreRefusal) -> None:
        self.set_status(refusal.status)
        self.finish(
            {"status": refusal.status, "error": refusal.error, "reasons": list(refusal.reasons)}
        )

    def store(self) -> StoreGateway:
        return StoreGateway.from_env()


class CasesHandler(DeskHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        try:
            store = self.store()
            rows = await self._listed(store)
            deadlines = await _panel_deadlines(store)
        except StoreRefusal as refusal:
            return self.refuse(refusal)
        self.finish(
            json.dumps(
                [
                    {**r, "panel_deadline": deadlines.get(r["id"]) or r["panel_deadline"]}
                    for r in rows
                ]
            )
        )

    async def _listed(self, store: StoreGateway) -> list[dict[str, Any]]:
        """The case rows, listed again only when the store's ETag for the list changed.

        The desk polls; each listing is an audited read of every case in it. With the tag
        of the last listing the store answers 304 while nothing changed, and the rows kept
        here (summaries only, never clinical content) are sent again.
        """
        # keyed by who asks (a server has one owner, but its token may be renewed)
        caches = self.settings.setdefault(_LIST_CACHE, {})
        who = hashlib.sha256(store.token.encode()).hexdigest()
        kept: tuple[str, list[dict[str, Any]]] | None = caches.get(who)
        headers = {"If-None-Match": kept[0]} if kept else {}
        resp = await store.request("GET", "/cases", headers=headers)
        if resp.status_code == 304 and kept:
            return kept[1]
        base = hub_base_url()
        rows = [case_summary(c, base_url=base) for c in resp.json()]
        etag = resp.headers.get("ETag")
        if etag:
            caches[who] = (etag, rows)
        return rows


async def _panel_deadlines(store: StoreGateway) -> dict[str, str]:
    """Case id -> its panel's deadline, for the panels the user owns a case of or sits on."""
    try:
        panels = await store.get_json("/panels?scope=mine")
    except StoreRefusal as refusal:
        if refusal.status in (403, 404):
            # no panel review part in this store, or not for this role: no deadlines to show
            return {}
        raise
    return {p["case_id"]: p["deadline"] for p in panels if p.get("deadline")}


class CaseHandler(DeskHandler):
    @web.authenticated
    @authorized
    async def get(self, case_id: str) -> None:
        try:
            store = self.store()
            case = await store.get_json(case_path(case_id))
            files = await store.get_json(case_path(case_id, "files"))
            slides = await store.get_json(case_path(case_id, "slides"))
        except StoreRefusal as refusal:
            return self.refuse(refusal)
        self.finish(
            {
                "case": case_summary(case, base_url=hub_base_url()),
                "files": [
                    {"id": f["id"], "name": f["name"], "media_type": f["media_type"]} for f in files
                ],
                "slides": [
                    {"id": s["id"], "width": s["width"], "height": s["height"]} for s in slides
                ],
            }
        )


class OutcomePdfHandler(DeskHandler):
    @web.authenticated
    @authorized
    async def get(self, case_id: str) -> None:
        try:
            resp = await self.store().request("GET", case_path(case_id, "outcome", "pdf"))
        except StoreRefusal as refusal:
            return self.refuse(refusal)
        self.set_header("Content-Disposition", 'inline; filename="outcome.pdf"')
        # patient data: the browser may show it, not keep it
        self.set_header("Cache-Control", "no-store")
        # APIHandler.finish would label it JSON (and the browser's PDF viewer would not show it)
        self.finish(resp.content, set_content_type="application/pdf")


class NotificationsHandler(DeskHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        try:
            body = await self.store().get_json("/notifications")
        except StoreRefusal as refusal:
            if refusal.status == 404:
                # a store without the panel review part: nothing to show, and the desk says why
                return self.finish({"available": False, "notifications": []})
            return self.refuse(refusal)
        notes = body.get("notifications", []) if isinstance(body, dict) else body
        base = hub_base_url()
        self.finish(
            {
                "available": True,
                "notifications": [notification_item(n, base) for n in notes or []],
            }
        )


class NotificationReadHandler(DeskHandler):
    @web.authenticated
    @authorized
    async def post(self, notification_id: str) -> None:
        try:
            resp = await self.store().request(
                "POST", "/notifications/" + quote(notification_id, safe="") + "/read"
            )
        except StoreRefusal as refusal:
            return self.refuse(refusal)
        self.finish(notification_item(resp.json(), hub_base_url()))


async def _unused_path(contents: Any, stem: str) -> str:
    n = 1
    while await ensure_async(contents.exists(f"{CASES_FOLDER}/{stem}-{n}.ipynb")):
        n += 1
    return f"{CASES_FOLDER}/{stem}-{n}.ipynb"


async def _save(contents: Any, path: str, nb: dict[str, Any]) -> None:
    if not await ensure_async(contents.dir_exists(CASES_FOLDER)):
        await ensure_async(contents.save({"type": "directory"}, CASES_FOLDER))
    await ensure_async(contents.save({"type": "notebook", "format": "json", "content": nb}, path))


class NewCaseNotebookHandler(DeskHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        path = await _unused_path(self.contents_manager, "new-case")
        await _save(self.contents_manager, path, new_case_notebook())
        self.set_status(201)
        self.finish({"path": path, "created": True})


class CaseNotebookHandler(DeskHandler):
    @web.authenticated
    @authorized
    async def post(self, case_id: str) -> None:
        # the case must be readable first: no notebook for a case the user may not see
        try:
            store = self.store()
            case = await store.get_json(case_path(case_id))
            slides = await store.get_json(case_path(case_id, "slides"))
        except StoreRefusal as refusal:
            return self.refuse(refusal)
        path = f"{CASES_FOLDER}/case-{case['id']}.ipynb"
        if await ensure_async(self.contents_manager.exists(path)):
            # the user's own notebook of this case, with whatever they added: open it, keep it
            return self.finish({"path": path, "created": False})
        await _save(
            self.contents_manager, path, case_notebook(case["id"], [s["id"] for s in slides])
        )
        self.set_status(201)
        self.finish({"path": path, "created": True})


ROUTES: list[tuple[str, type[DeskHandler]]] = [
    ("cpms/api/cases", CasesHandler),
    (f"cpms/api/cases/{_CASE_ID}", CaseHandler),
    (f"cpms/api/cases/{_CASE_ID}/outcome.pdf", OutcomePdfHandler),
    ("cpms/api/notifications", NotificationsHandler),
    (f"cpms/api/notifications/{_NOTE_ID}/read", NotificationReadHandler),
    ("cpms/api/new-case-notebook", NewCaseNotebookHandler),
    (f"cpms/api/case-notebook/{_CASE_ID}", CaseNotebookHandler),
]


def setup_handlers(web_app: Any) -> None:
    base = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base, route), h) for route, h in ROUTES])
