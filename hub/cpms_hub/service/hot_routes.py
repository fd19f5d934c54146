"""The service's most frequent request, ``GET …/cases/{case_id}``, handed straight to its handler.

Reading a case is what notebooks do most, and on SQLite the store's own work
for it is a few tens of microseconds. Around it, FastAPI's request path cost
more than the read: matching the path against every route of every included
router, the exit-stack and exception middlewares, solving the route's
dependencies and validating its parameters (one string), each a few
coroutine hops. :class:`HotCaseReads`, a pure ASGI middleware, recognises
``GET <api root>/cases/<one path segment>`` and calls the route's own handler
with the case id; every other request goes on to FastAPI untouched.

Nothing of what the route promises is skipped: the handler is the very
function the FastAPI route runs (it identifies the caller through the hub,
reads the account as it is now, applies policy, audits the read and commits
the entry before answering), errors get the one JSON error shape through the
same functions as FastAPI's exception handlers (401 and 403 kept apart), and
the route stays registered with FastAPI, so the OpenAPI document is
unchanged and a request this middleware does not take (a trailing slash, a
deeper path, another method) meets FastAPI's routing as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cpms_hub.domain.errors import CpmsError

from .errors import cpms_error_response, unexpected_error_response

__all__ = ["HotCaseReads"]

#: ``handler(case_id, request)``: the FastAPI route's own function
CaseReadHandler = Callable[[str, Request], Awaitable[Response]]


class HotCaseReads:
    """Pure ASGI: ``GET {cases_prefix}{case_id}`` to ``handler``, the rest to ``app``."""

    def __init__(self, app: ASGIApp, *, cases_prefix: str, handler: CaseReadHandler) -> None:
        self.app = app
        self.prefix = cases_prefix
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(self.prefix):
                case_id = path[len(self.prefix) :]
                # one non-empty segment, as the route's {case_id} matches
                if case_id and "/" not in case_id:
                    await self._read(case_id, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _read(self, case_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self.handler(case_id, Request(scope, receive))
        except CpmsError as exc:
            response = cpms_error_response(exc)
        except Exception as exc:  # noqa: BLE001 - answered as FastAPI's handler would
            response = unexpected_error_response(exc)
        await response(scope, receive, send)
