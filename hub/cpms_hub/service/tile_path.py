"""The steady-state stored tile, answered in front of the framework (pure ASGI).

A viewer fetches hundreds of tiles a minute with the same grant, and nearly all of them
are the steady state of :mod:`.slide_routes`: grant already seen and audited, slide
already open, the tile a stored JPEG passed through. The work of such a tile is a hash
look-up, a read of a few KiB and one segment's AES-GCM (tens of microseconds); what the
framework adds around it cost more than the tile itself (measured: each tile took about
twice the service CPU of the empty ``/health`` route). The middleware stack, route
matching, parameter solving (five path parameters, three int conversions), the
dependency machinery and the response object all run per request.

:class:`StoredTilePath` sits in front of the app's middleware and answers exactly that
steady state itself: it splits the path once, reads the grant header from the raw
header list and sends the tile with a prebuilt header list. It decides nothing on its
own: ``ready`` (from :func:`.slide_routes.slide_routers`) checks the grant - HMAC
verified once, then by hash, scope and expiry on every tile - and returns the tile only
when no database access, audit write, slide opening or pixel work is needed.

Everything else goes to the app unchanged, which serves it through the documented
route: other paths and methods, a missing or bad grant (401), a grant's first use (its
one audit entry), a slide not open yet, a tile needing pixel work, an address out of
range (404), a damaged tile (500, logged there), anything that raises here. Those are
answered once, by the route, in the one JSON error shape; this path never writes an
error of its own, so it cannot answer differently from the route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

__all__ = ["ReadyTile", "StoredTilePath"]

#: ``(case_id, slide_id, level, col, row, grant) -> (data, media_type)``, or None when
#: the route must answer; raises when the route must answer with an error
ReadyTile = Callable[[str, str, int, int, int, str | None], "tuple[bytes, str] | None"]

_Scope = dict
_Receive = Callable[[], Awaitable[dict]]
_Send = Callable[[dict], Awaitable[None]]
_App = Callable[[_Scope, _Receive, _Send], Awaitable[None]]

_SUFFIX = ".jpeg"


def _number(text: str) -> int | None:
    # ASCII digits only (int() would take "+1", " 1", "١"): anything unusual goes to the
    # route, whose parameter validation answers it; the length bound keeps int() cheap
    if text.isascii() and text.isdigit() and len(text) <= 9:
        return int(text)
    return None


class StoredTilePath:
    """Pure ASGI middleware: answers ``GET {api_root}/cases/{case_id}/slides/{slide_id}/
    tiles/{level}/{col}_{row}.jpeg`` when ``ready`` has the tile, else passes the
    request to ``app``.

    ``headers`` are sent with every tile it answers (the route's own tile headers), then
    ``Content-Length`` and ``Content-Type``: the route's response, header for header.
    """

    def __init__(
        self,
        app: _App,
        *,
        api_root: str,
        ready: ReadyTile,
        headers: Iterable[tuple[str, str]],
        grant_header: str,
    ) -> None:
        self.app = app
        self._prefix = api_root + "/cases/"
        self._ready = ready
        self._grant = grant_header.lower().encode("latin-1")
        self._headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        #: media type -> its header pair (one per kind of tile, made once)
        self._types: dict[str, tuple[bytes, bytes]] = {}

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            found = self._tile(scope)
            if found is not None:
                data, media_type = found
                kind = self._types.get(media_type)
                if kind is None:
                    kind = self._types[media_type] = (b"content-type", media_type.encode())
                headers = [*self._headers, (b"content-length", str(len(data)).encode()), kind]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": data})
                return
        await self.app(scope, receive, send)

    def _tile(self, scope: _Scope) -> tuple[bytes, str] | None:
        """The tile when the request is a tile request ``ready`` can answer, else None."""
        path = scope["path"]
        prefix = self._prefix
        if not path.startswith(prefix) or not path.endswith(_SUFFIX):
            return None
        # case_id / "slides" / slide_id / "tiles" / level / col_row
        parts = path[len(prefix) : -len(_SUFFIX)].split("/")
        if len(parts) != 6 or parts[1] != "slides" or parts[3] != "tiles":
            return None
        case_id, _, slide_id, _, level_text, cell = parts
        col_text, _, row_text = cell.partition("_")
        level, col, row = _number(level_text), _number(col_text), _number(row_text)
        if not case_id or not slide_id or level is None or col is None or row is None:
            return None
        grant = None
        for name, value in scope["headers"]:
            if name == self._grant:
                grant = value.decode("latin-1")
                break
        if grant is None:
            return None
        try:
            return self._ready(case_id, slide_id, level, col, row, grant)
        except Exception:  # noqa: BLE001 - the route answers it again, in the one error shape
            return None
