"""Account life cycle through a real browser: request, approval, enrolment, login, lockout.

Chromium (Debian's, driven by Playwright's sync API) talks to the session's
deployment on loopback only. Every test gets a fresh browser context (its own
cookies), and every test that changes an account uses a dedicated one, so the
matrix accounts of other modules are left as they were. Logins that need not
reach JupyterLab ask for ``next=/hub/home`` so they do not start a user server.
"""

from __future__ import annotations

import json
import random
import string
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pyotp
import pytest

if TYPE_CHECKING:  # not at run time: pytest would try to collect a class named Test*
    from tests.deployment import Deployment, TestAccount

pytestmark = [pytest.mark.deployment, pytest.mark.browser]

playwright_sync = pytest.importorskip("playwright.sync_api")

#: a spawn takes 5-15 s here; JupyterLab then loads its assets
LAB_TIMEOUT_MS = 90_000
#: in every JupyterLab page (its server-side configuration), in no hub page
LAB_MARKER = "jupyter-config-data"


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def new_page(browser):
    """Factory of pages, each in a fresh context (own cookies); all closed at teardown."""
    contexts = []

    def make():
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(20_000)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()


def _unique(prefix: str) -> str:
    return f"{prefix}-" + "".join(random.choices(string.ascii_lowercase, k=4))


def _path(page) -> str:
    return urlsplit(page.url).path


def _hub(deployment: Deployment) -> httpx.Client:
    """The hub's REST API as the ``cpms-admin`` service (test set-up and clean-up only)."""
    token = (deployment.state_dir / "keys" / "admin-service.token").read_text().strip()
    return httpx.Client(
        base_url=f"{deployment.url}/hub/api",
        headers={"Authorization": f"token {token}"},
        timeout=30,
        trust_env=False,
    )


def _stop_server(deployment: Deployment, name: str) -> None:
    with _hub(deployment) as hub:
        hub.delete(f"/users/{name}/server")


def _start_server(deployment: Deployment, name: str) -> None:
    with _hub(deployment) as hub:
        started = hub.post(f"/users/{name}/server")
        assert started.status_code in (201, 202), started.text
        deadline = time.monotonic() + LAB_TIMEOUT_MS / 1000
        while True:
            model = hub.get(f"/users/{name}").json()
            server = (model.get("servers") or {}).get("")
            if server is None:
                pytest.fail(f"the server of {name} failed to start")
            if server.get("ready"):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"the server of {name} was not ready in time")
            time.sleep(0.5)


def _store(deployment: Deployment, method: str, path: str, token: str) -> httpx.Response:
    return httpx.request(
        method,
        f"{deployment.api}{path}",
        headers={"Authorization": f"token {token}"},
        timeout=30,
        trust_env=False,
    )


def _login(
    page,
    deployment: Deployment,
    name: str,
    password: str,
    code: str,
    *,
    next_url: str | None = "/hub/home",
) -> None:
    """Fill and submit the login form (one submit: a second would burn the code)."""
    query = f"?next={next_url}" if next_url else ""
    page.goto(f"{deployment.url}/hub/login{query}")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.fill("#otp_input", code)
    with page.expect_navigation(wait_until="commit"):
        page.click("#login_submit")
    page.wait_for_load_state("domcontentloaded")


def _assert_refused(page) -> None:
    assert _path(page) == "/hub/login", page.url
    error = page.locator("#login_error")
    playwright_sync.expect(error).to_be_visible()
    assert error.inner_text().strip()


def _assert_logged_in(page) -> None:
    path = _path(page)
    assert path.startswith(("/hub/", "/user/")) and path != "/hub/login", page.url
    assert page.locator("#login_error").count() == 0


def _wrong_code(secret: str) -> str:
    """A 6-digit code valid in none of the steps around now."""
    totp = pyotp.TOTP(secret)
    now = time.time()
    valid = {totp.at(now + d) for d in range(-90, 91, 30)}
    return next(c for c in (f"{i:06d}" for i in range(1_000_000)) if c not in valid)


def _wait_for_lab(page, deployment: Deployment, name: str) -> None:
    """Wait until the browser shows /user/<name>/lab; fail at once if the spawn failed."""
    deadline = time.monotonic() + LAB_TIMEOUT_MS / 1000
    with _hub(deployment) as hub:
        while f"/user/{name}/lab" not in page.url:
            servers = hub.get(f"/users/{name}").json().get("servers") or {}
            if "" not in servers:
                pytest.fail(
                    f"no server for {name} (spawn failed?) at {page.url}: "
                    f"{page.locator('body').inner_text()[:500]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab not reached; still at {page.url}")
            # not time.sleep: the sync API processes the page's events only while it waits
            page.wait_for_timeout(500)


def _dedicated(deployment: Deployment, prefix: str) -> TestAccount:
    return deployment.add_account(_unique(prefix), ("clinician",), hospital="Hospital A")


# -- 1. the whole journey ----------------------------------------------------------------------


def test_request_approve_enrol_and_log_in(deployment, tokens, new_page, tmp_path):
    name = _unique("newdoc")
    password = f"correct horse {name} battery"
    page = new_page()

    # request an account
    page.goto(f"{deployment.url}/hub/cpms/request-account")
    page.fill("#name_input", name)
    page.fill("#email_input", f"{name}@example.org")
    page.fill("#full_name_input", "Dr Newdoc Test")
    page.fill("#hospital_input", "Hospital A")
    page.fill("#network_input", "ERN-TEST")
    page.check("#role_clinician")
    page.fill("#password_input", password)
    page.fill("#password_confirm_input", password)
    with page.expect_navigation():
        page.click("#request_submit")
    playwright_sync.expect(page.locator("#request_submitted")).to_be_visible()
    assert name in page.locator("#request_submitted").inner_text()

    listed = json.loads(deployment.admin("account", "list", "--json").stdout)
    mine = [a for a in listed if a["name"] == name]
    assert mine and mine[0]["status"] == "requested", listed
    assert mine[0]["roles"] == ["clinician"] and not mine[0]["mfa_enrolled"]

    # not yet approved: enrolment is refused
    page.goto(f"{deployment.url}/hub/cpms/enrol")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    with page.expect_navigation():
        page.click("#enrol_submit")
    playwright_sync.expect(page.locator("#enrol_error")).to_be_visible()

    # the helpdesk approves through the store API
    resp = _store(deployment, "POST", f"/accounts/{name}/approve", tokens["help-h"])
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "active"

    # enrol: the page shows the secret once
    page.goto(f"{deployment.url}/hub/cpms/enrol")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    with page.expect_navigation():
        page.click("#enrol_submit")
    secret_el = page.locator("#totp_secret")
    playwright_sync.expect(secret_el).to_be_visible()
    secret = secret_el.get_attribute("data-secret")
    assert secret and secret.replace(" ", "") == secret_el.inner_text().replace(" ", "")
    uri = page.locator("#otpauth_uri").inner_text()
    assert f"secret={secret}" in uri
    assert password not in page.content()

    # sign in with password and a code from the new secret (the first login confirms it)
    _login(page, deployment, name, password, pyotp.TOTP(secret).now())
    _assert_logged_in(page)
    assert _path(page) == "/hub/home", page.url
    assert name in page.content()
    page.screenshot(path=str(tmp_path / "hub-home.png"))

    state = deployment.open_state()
    try:
        assert state.accounts.get(name).mfa_enrolled
    finally:
        state.close()
    listed = json.loads(deployment.admin("account", "list", "--json").stdout)
    assert [a["status"] for a in listed if a["name"] == name] == ["active"]


def test_login_lands_in_jupyterlab(deployment, new_page, tmp_path):
    acc = _dedicated(deployment, "labdoc")
    page = new_page()
    try:
        # no next=: the hub's default after login is to start the server and open it
        _login(page, deployment, acc.name, acc.password, acc.code(), next_url=None)
        _wait_for_lab(page, deployment, acc.name)
        playwright_sync.expect(page.locator("#jp-main-dock-panel")).to_be_visible(
            timeout=LAB_TIMEOUT_MS
        )
        page.screenshot(path=str(tmp_path / "jupyterlab.png"))
    finally:
        _stop_server(deployment, acc.name)


# -- 2. a wrong code ---------------------------------------------------------------------------


def test_wrong_code_is_refused_then_right_code_works(deployment, new_page):
    acc = _dedicated(deployment, "wrongcode")
    page = new_page()
    _login(page, deployment, acc.name, acc.password, _wrong_code(acc.totp_secret))
    _assert_refused(page)

    _login(page, deployment, acc.name, acc.password, acc.code())
    _assert_logged_in(page)


# -- 3. a replayed code ------------------------------------------------------------------------


def test_reused_code_is_refused(deployment, new_page):
    acc = _dedicated(deployment, "replay")
    code = acc.code()
    first = new_page()
    _login(first, deployment, acc.name, acc.password, code)
    _assert_logged_in(first)

    second = new_page()
    _login(second, deployment, acc.name, acc.password, code)
    _assert_refused(second)


# -- 4. lockout --------------------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_account(deployment, new_page):
    acc = _dedicated(deployment, "lockout")
    page = new_page()
    for i in range(5):
        # a wrong password is refused before the code is looked at: any code will do
        _login(page, deployment, acc.name, f"not-the-password-{i}", "123456")
        _assert_refused(page)

    _login(page, deployment, acc.name, acc.password, acc.code())
    _assert_refused(page)

    state = deployment.open_state()
    try:
        locked_until = state.accounts.get(acc.name).locked_until
    finally:
        state.close()
    assert locked_until is not None and locked_until > datetime.now(UTC), locked_until


# -- 5. disabling cuts off tokens and sessions -------------------------------------------------


def test_disabled_account_token_is_refused_at_once(deployment, tokens):
    acc = _dedicated(deployment, "disabled")
    token = deployment.token(acc.name)
    me = _store(deployment, "GET", "/me", token)
    assert me.status_code == 200, me.text
    assert me.json()["name"] == acc.name

    resp = _store(deployment, "POST", f"/accounts/{acc.name}/disable", tokens["help-h"])
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "disabled"

    after = _store(deployment, "GET", "/me", token)
    assert after.status_code == 401, after.text
    body = after.json()
    assert set(body) == {"status", "error", "reasons"}, body
    assert body["status"] == 401 and body["error"] and body["reasons"], body

    # the disable revoked the token at the hub too
    hub = httpx.get(
        f"{deployment.url}/hub/api/user",
        headers={"Authorization": f"token {token}"},
        timeout=30,
        trust_env=False,
    )
    assert hub.status_code in (401, 403), hub.text


def test_disabled_user_browser_session_is_logged_out(deployment, new_page):
    acc = _dedicated(deployment, "session")
    page = new_page()
    _login(page, deployment, acc.name, acc.password, acc.code())
    _assert_logged_in(page)
    page.goto(f"{deployment.url}/hub/home")
    assert _path(page) == "/hub/home", page.url

    deployment.admin("account", "disable", acc.name)
    refresh = int(deployment.env["CPMS_AUTH_REFRESH_SECONDS"])
    time.sleep(refresh + 1)
    page.goto(f"{deployment.url}/hub/home")
    assert _path(page) == "/hub/login", page.url


# -- 6. the helpdesk and other people's notebooks ----------------------------------------------


@pytest.mark.parametrize(
    "server",
    ["stopped", "running"],
)
def test_helpdesk_cannot_open_a_clinicians_notebook(deployment, tokens, server):
    if server == "running":
        # then the request would reach a real JupyterLab if it were let through
        _start_server(deployment, "clin-a")
    try:
        headers = {"Authorization": f"token {tokens['help-h']}"}
        for follow in (False, True):
            resp = httpx.get(
                f"{deployment.url}/user/clin-a/lab/",
                headers=headers,
                follow_redirects=follow,
                timeout=30,
                trust_env=False,
            )
            assert resp.status_code != 200 or LAB_MARKER not in resp.text, (follow, resp.url)
            if not follow:
                assert resp.status_code != 200, resp.status_code
        api = httpx.get(
            f"{deployment.url}/user/clin-a/api/contents",
            headers=headers,
            timeout=30,
            trust_env=False,
        )
        assert api.status_code != 200, api.status_code
    finally:
        if server == "running":
            _stop_server(deployment, "clin-a")
