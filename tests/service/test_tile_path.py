"""The stored-tile path in front of the app (:mod:`cpms_hub.service.tile_path`).

It answers only a well-formed ``GET`` of a tile whose ``ready`` function has the tile,
and passes every other request to the app untouched: the app's routes are the ones that
answer errors, first uses and pixel work. Driven here as plain ASGI, with the app behind
it a small ASGI function that records what reached it.
"""

from __future__ import annotations

import asyncio

import pytest

from cpms_hub.domain.errors import AuthenticationError, NotFoundError
from cpms_hub.service.tile_path import StoredTilePath

API = "/services/cpms-store/api/v1"
CASE = "9d194ad4-497e-463e-b1b9-cdc8aca69631"
SLIDE = "ed81b641-e40f-4e77-8eb8-a21218519897"
TILE = f"{API}/cases/{CASE}/slides/{SLIDE}/tiles/15/3_4.jpeg"
HEADERS = (("Cache-Control", "private, max-age=3600"), ("Vary", "X-CPMS-Grant"))


class _Behind:
    """The app behind the path: answers 299 and records the paths that reached it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _path(ready) -> tuple[StoredTilePath, _Behind]:  # noqa: ANN001
    behind = _Behind()
    return (
        StoredTilePath(
            behind, api_root=API, ready=ready, headers=HEADERS, grant_header="X-CPMS-Grant"
        ),
        behind,
    )


def _get(app, path: str = TILE, *, method: str = "GET", grant: str | None = "g", **extra):  # noqa: ANN001, ANN202
    headers = [(b"host", b"x")] + ([(b"x-cpms-grant", grant.encode())] if grant else [])
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": headers}
    scope.update(extra)
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_ready_tile_is_sent_with_the_route_headers() -> None:
    calls = []

    def ready(*args):  # noqa: ANN002, ANN202
        calls.append(args)
        return b"\xff\xd8jpeg", "image/jpeg"

    app, behind = _path(ready)
    start, body = _get(app, grant="the-grant")
    assert calls == [(CASE, SLIDE, 15, 3, 4, "the-grant")]
    assert behind.paths == []
    assert start == {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"cache-control", b"private, max-age=3600"),
            (b"vary", b"X-CPMS-Grant"),
            (b"content-length", b"6"),
            (b"content-type", b"image/jpeg"),
        ],
    }
    assert body == {"type": "http.response.body", "body": b"\xff\xd8jpeg"}


@pytest.mark.parametrize(
    "outcome", [None, AuthenticationError("grant invalid"), NotFoundError("no tile")]
)
def test_anything_but_a_ready_tile_goes_to_the_app(outcome) -> None:  # noqa: ANN001
    def ready(*_args):  # noqa: ANN002, ANN202
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    app, behind = _path(ready)
    (start, _) = _get(app)
    assert start["status"] == 299 and behind.paths == [TILE]


@pytest.mark.parametrize(
    ("path", "options"),
    [
        (TILE, {"method": "HEAD"}),
        (TILE, {"method": "POST"}),
        (TILE, {"grant": None}),  # the route answers 401 in the one error shape
        (TILE, {"root_path": "/mounted"}),
        (f"{API}/health", {}),
        (f"{API}/cases/{CASE}/slides/{SLIDE}/dzi", {}),
        (f"{API}/cases/{CASE}/slides/{SLIDE}/tiles/15/3_4.png", {}),
        (f"{API}/cases/{CASE}/slides/{SLIDE}/tiles/x/3_4.jpeg", {}),
        (f"{API}/cases/{CASE}/slides/{SLIDE}/tiles/15/3-4.jpeg", {}),
        (f"{API}/cases/{CASE}/slides/{SLIDE}/tiles/15/+3_4.jpeg", {}),
        (f"{API}/cases/{CASE}/slides/{SLIDE}/tiles/15/3_4_5.jpeg", {}),
        (f"{API}/cases/{CASE}/slides/{SLIDE}/tiles/١٥/3_4.jpeg", {}),
        (f"{API}/cases/{CASE}/slides/{SLIDE}/tiles/1234567890/3_4.jpeg", {}),
        (f"{API}/cases/{CASE}/slides/{SLIDE}/extra/tiles/15/3_4.jpeg", {}),
        (f"{API}/cases/{CASE}/files/{SLIDE}/tiles/15/3_4.jpeg", {}),
        (f"{API}/cases//slides/{SLIDE}/tiles/15/3_4.jpeg", {}),
        (f"/elsewhere/cases/{CASE}/slides/{SLIDE}/tiles/15/3_4.jpeg", {}),
    ],
)
def test_other_requests_go_to_the_app_untouched(path: str, options: dict) -> None:
    def ready(*_args):  # noqa: ANN002, ANN202
        raise AssertionError("not a tile request this path answers")

    app, behind = _path(ready)
    grant = options.pop("grant", "g")
    method = options.pop("method", "GET")
    (start, _) = _get(app, path, method=method, grant=grant, **options)
    assert start["status"] == 299 and behind.paths == [path]


def test_lifespan_goes_to_the_app() -> None:
    seen = []

    async def behind(scope, receive, send) -> None:  # noqa: ANN001
        seen.append(scope["type"])

    app = StoredTilePath(
        behind, api_root=API, ready=lambda *_: None, headers=(), grant_header="X-CPMS-Grant"
    )
    asyncio.run(app({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]
