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
