"""The slide tile routes in the service's app: matched before all others, documented once.

A viewer fetches hundreds of tiles a minute and a request is matched against the app's
routes in order, so the descriptor and tile routes are included first (hidden copies of
the documented routes). The OpenAPI document must not show them twice or elsewhere.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Match

from cpms_hub.service.app import create_app
from cpms_hub.service.slide_routes import SLIDE_ROUTES_DOC

API = "/services/cpms-store/api/v1"
CASE = "9d194ad4-497e-463e-b1b9-cdc8aca69631"
SLIDE = "ed81b641-e40f-4e77-8eb8-a21218519897"


class _HubAuth:
    cookie_name = "cpms-test"


@pytest.fixture(scope="module")
def app(tmp_path_factory):  # noqa: ANN201
    from cpms_hub.state import init_state
    from tests.deployment import state_settings

    folder = tmp_path_factory.mktemp("state")
    state = init_state(state_settings(folder))
    try:
        yield create_app(state, _HubAuth())
    finally:
        state.close()


def _scope(path: str) -> dict:
    return {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}


@pytest.mark.parametrize(
    "path", [f"/cases/{CASE}/slides/{SLIDE}/tiles/15/3_4.jpeg", f"/cases/{CASE}/slides/{SLIDE}/dzi"]
)
def test_tile_routes_are_matched_first(app, path: str) -> None:  # noqa: ANN001
    routes = [r for r in app.router.routes if not getattr(r, "path", "").endswith("openapi.json")]
    match, _ = routes[0].matches(_scope(API + path))
    assert match == Match.FULL
    # and nothing else is matched first: /health, the first of the other routes, is not
    assert routes[0].matches(_scope(API + "/health"))[0] == Match.NONE


def test_openapi_lists_each_slide_route_once_in_order(app) -> None:  # noqa: ANN001
    paths = list(app.openapi()["paths"])
    slide_paths = [p[len(API) :] for p in paths if "/slides" in p and "annotations" not in p]
    documented = list(dict.fromkeys(p for _, p in SLIDE_ROUTES_DOC))
    assert slide_paths == documented  # once each, where the slide routes are declared
    tile = app.openapi()["paths"][API + SLIDE_ROUTES_DOC[4][1]]
    assert list(tile) == ["get"] and tile["get"]["tags"] == ["slides"]


def test_hot_copies_keep_the_grant_check(app) -> None:  # noqa: ANN001
    with TestClient(app) as client:
        for path in (
            f"/cases/{CASE}/slides/{SLIDE}/tiles/15/3_4.jpeg",
            f"/cases/{CASE}/slides/{SLIDE}/dzi",
        ):
            r = client.get(API + path, headers={"X-CPMS-Grant": "bad.grant"})
            assert r.status_code == 401
            assert r.json()["reasons"] == ["X-CPMS-Grant: invalid"]
            r = client.post(API + path)  # another method: the documented route's 405
            assert r.status_code == 405
