"""The ``cpms-review`` service: Panel apps under the hub, logged in through its OAuth.

A panel member opens ``/services/cpms-review/`` in Chromium, is sent to the
hub's login page (password + TOTP), comes back through Panel's OAuth
callback and sees their inbox, with the store called as themselves. Someone
whose roles do not include the review apps (a data scientist) is refused by
the hub. No token or OAuth code ends up in a URL the app shows, and Panel's
cookies stay below the service's prefix.
"""

from __future__ import annotations

import httpx
import pytest

from tests.integration.test_accounts_browser import _path

pytestmark = [pytest.mark.deployment]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect


def test_review_service_answers_through_the_proxy(deployment):
    live = httpx.get(f"{deployment.review_url}liveness", timeout=10, trust_env=False)
    assert live.status_code == 200


def test_anonymous_request_goes_to_the_hub_login(deployment):
    resp = httpx.get(deployment.review_url, timeout=10, trust_env=False, follow_redirects=False)
    assert resp.status_code in (302, 303)
    # Panel's own login endpoint, which starts the hub's OAuth flow
    login = httpx.URL(deployment.review_url).join(resp.headers["location"])
    assert login.path == "/services/cpms-review/login"
    nxt = httpx.get(
        login,
        timeout=10,
        trust_env=False,
        follow_redirects=False,
    )
    assert nxt.status_code == 302
    assert nxt.headers["location"].startswith("/hub/api/oauth2/authorize?")
    assert "client_id=service-cpms-review" in nxt.headers["location"]


@pytest.mark.browser
def test_panel_member_logs_in_and_sees_the_inbox(deployment, page):
    acc = deployment.accounts["panel-p"]
    page.goto(deployment.review_url)
    page.wait_for_url("**/hub/login**")
    page.fill("#username_input", acc.name)
    page.fill("#password_input", acc.password)
    page.fill("#otp_input", acc.code())
    page.click("#login_submit")
    page.wait_for_url("**/services/cpms-review/**")
    expect(page.get_by_text("signed in as panel-p")).to_be_visible()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    assert _path(page) == "/services/cpms-review/"
    assert "code=" not in page.url and "token" not in page.url
    cookies = {c["name"]: c for c in page.context.cookies(deployment.review_url)}
    assert "access_token" in cookies
    assert cookies["access_token"]["httpOnly"]
    assert cookies["access_token"]["path"] == "/services/cpms-review/"


@pytest.mark.browser
def test_data_scientist_is_refused_by_the_hub(deployment, page):
    acc = deployment.accounts["sci-d"]
    page.goto(deployment.review_url)
    page.wait_for_url("**/hub/login**")
    page.fill("#username_input", acc.name)
    page.fill("#password_input", acc.password)
    page.fill("#otp_input", acc.code())
    with page.expect_response(lambda r: "/hub/api/oauth2/authorize" in r.url) as info:
        page.click("#login_submit")
    assert info.value.status == 403
    expect(page.get_by_text("signed in as")).to_have_count(0)


@pytest.mark.browser
def test_workspace_shows_a_slide_with_the_notebook_viewer(deployment, page, tmp_path):
    """The case owner opens their case in the review app: the Images tab runs the same
    OpenSeadragon bundle as in JupyterLab, tiles come from the store with the grant in a
    header, and the page loads nothing from outside the deployment (no CDN)."""
    import re

    from cpms_widgets.client import CaseStoreClient
    from tests.integration.test_slides_http import SAMPLE

    if not SAMPLE.exists():
        pytest.skip(f"sample slide not found at {SAMPLE}")
    acc = deployment.accounts["clin-a"]
    with CaseStoreClient(deployment.api, deployment.token(acc.name)) as client:
        case = client.create_case("review slide case", "biopsy")
        up = client.upload(case.id, SAMPLE, media_type="image/tiff")
        slide = client.import_slide_file(case.id, up.id)

    tile_re = re.compile(r"/slides/[^/]+/tiles/\d+/\d+_\d+\.")
    urls: list[str] = []
    tiles: list[tuple[str, str | None]] = []
    statuses: list[int] = []
    page.on("request", lambda r: urls.append(r.url))
    page.on(
        "request",
        lambda r: (
            tiles.append((r.url, r.headers.get("x-cpms-grant"))) if tile_re.search(r.url) else None
        ),
    )
    page.on("response", lambda r: statuses.append(r.status) if tile_re.search(r.url) else None)
    try:
        page.goto(f"{deployment.review_url}?case={case.id}")
        page.wait_for_url("**/hub/login**")
        page.fill("#username_input", acc.name)
        page.fill("#password_input", acc.password)
        page.fill("#otp_input", acc.code())
        page.click("#login_submit")
        page.wait_for_url(f"**/services/cpms-review/?case={case.id}")
        expect(page.get_by_text("review slide case").first).to_be_visible()
        page.get_by_text("Images", exact=True).click()
        viewer = page.locator(".cpms-slide-viewer")
        expect(viewer).to_be_visible(timeout=60_000)
        expect(viewer.locator(".openseadragon-container").first).to_be_visible()
        page.wait_for_timeout(500)
        for _ in range(120):
            if 200 in statuses:
                break
            page.wait_for_timeout(250)
        page.wait_for_timeout(1000)
        assert tiles and 200 in statuses, statuses[:10]
        assert all(s == 200 for s in statuses), statuses
        assert all(g for _u, g in tiles)
        grants = {g for _u, g in tiles}
        assert not [u for u in urls for g in grants if g in u]
        slide_id = slide["id"]
        assert all(f"/slides/{slide_id}/" in u for u, _g in tiles)
        # blob: and data: URLs are made in the page itself (tiles, the ESM module)
        outside = [u for u in urls if not u.startswith((deployment.url, "blob:", "data:"))]
        assert not outside, outside[:5]
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
