"""The one JSON error shape of the store service.

Every error response, from every route, is ``{"status": <int>, "error":
<short text>, "reasons": [<text>, ...]}``. 401 means the caller could not be
identified; 403 means the caller is known but not allowed, and the reasons
say why. Messages name fields and rules, never values: no patient data,
tokens or exception text from the crypto layer leave the service.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cpms_hub.domain.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    CpmsError,
    IntegrityError,
    KeyUnavailableError,
    NotAcceptableError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)

__all__ = [
    "error_response",
    "cpms_error_response",
    "unexpected_error_response",
    "install_error_handlers",
    "ERROR_STATUS",
]

log = logging.getLogger("cpms.store")

ERROR_STATUS: dict[type[CpmsError], tuple[int, str]] = {
    ValidationError: (422, "invalid input"),
    AuthenticationError: (401, "authentication required"),
    PermissionDeniedError: (403, "forbidden"),
    NotFoundError: (404, "not found"),
    NotAcceptableError: (406, "not acceptable"),
    ConflictError: (409, "conflict"),
    IntegrityError: (500, "stored data failed its integrity check"),
    KeyUnavailableError: (410, "the data is no longer available"),
    ConfigurationError: (500, "service misconfigured"),
}


def error_response(
    status: int, error: str, reasons: list[str] | tuple[str, ...] = ()
) -> JSONResponse:
    headers = {"WWW-Authenticate": 'token realm="cpms-store"'} if status == 401 else None
    return JSONResponse(
        {"status": status, "error": error, "reasons": list(reasons)},
        status_code=status,
        headers=headers,
    )


def cpms_error_response(exc: CpmsError) -> JSONResponse:
    """The answer to a :class:`CpmsError` raised by a route (or by its dependencies)."""
    status, error = next(
        (v for k, v in ERROR_STATUS.items() if isinstance(exc, k)), (500, "internal error")
    )
    if isinstance(exc, IntegrityError | ConfigurationError):
        # operators need to know; the caller gets no crypto detail
        log.error("%s: %s", type(exc).__name__, exc)
        return error_response(status, error, [error])
    return error_response(status, error, exc.reasons)


def unexpected_error_response(exc: BaseException) -> JSONResponse:
    """The answer to any other exception: a bare 500, its type logged (never its text)."""
    # type only: exception text may quote data
    log.error("unexpected %s", type(exc).__name__)
    return error_response(500, "internal error", ["internal error"])


def _field_path(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CpmsError)
    async def _cpms(_: Request, exc: CpmsError) -> JSONResponse:
        return cpms_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "malformed JSON", ["the body is not valid JSON"])
        reasons = []
        for e in errors:
            kind = e.get("type", "")
            field = _field_path(tuple(e.get("loc", ())))
            if kind == "extra_forbidden":
                reasons.append(f"{field}: unknown field")
            elif kind == "missing":
                reasons.append(f"{field}: is required")
            else:
                # pydantic's message names the rule, not the value
                reasons.append(f"{field}: {e.get('msg', 'is invalid')}")
        return error_response(422, "invalid input", reasons)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return error_response(exc.status_code, detail, [detail])

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return unexpected_error_response(exc)
