"""The pieces of CPMS that depend on the JupyterHub version (supported: >=5.5,<7).

Run this module with each supported hub by running pytest from a venv that has
that hub installed: the harness starts ``jupyterhub`` from the interpreter's own
``bin`` folder (``make test-hub55`` does it for JupyterHub 5.5, with this module
and the review service's). It checks what the other integration modules do not:

- the hub that runs is in the supported range;
- ``Authenticator.auth_refresh_strict`` (new in 6.1) is set only where it
  exists, so no hub warns about it (older hubs are always strict);
- the store's own browser login: JupyterHub's OAuth flow through
  :class:`jupyterhub.services.auth.HubOAuth` (``oauth_login`` ->
  hub authorize -> ``oauth_callback`` -> ``token_for_code``), then the
  cookie-authenticated API with its double-submit XSRF check;
- the review apps' login (Panel's generic OAuth) and the scopes of the token
  the hub issues to them: the person's CPMS scopes, no more.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:  # not at run time: pytest would try to collect a class named Test*
    from tests.deployment import Deployment

pytestmark = pytest.mark.deployment

STRICT_WARNING = "Config option `auth_refresh_strict` not recognized"


def _hub_version(deployment: Deployment) -> tuple[int, ...]:
    r = httpx.get(f"{deployment.url}/hub/api/", timeout=10, trust_env=False)
    r.raise_for_status()
    return tuple(int(p) for p in re.findall(r"\d+", r.json()["version"])[:3])


def test_hub_version_is_supported(deployment: Deployment) -> None:
    assert (5, 5) <= _hub_version(deployment) < (7,)


def test_no_hub_warns_about_auth_refresh_strict(deployment: Deployment) -> None:
    assert STRICT_WARNING not in deployment.log_text()


def _login(client: httpx.Client, deployment: Deployment, name: str) -> None:
    acc = deployment.accounts[name]
    page = client.get("/hub/login")
    page.raise_for_status()
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert xsrf, "no _xsrf field in the login form"
    r = client.post(
        "/hub/login?next=/hub/home",
        data={
            "_xsrf": xsrf.group(1),
            "username": acc.name,
            "password": acc.password,
            "otp": acc.code(),
            "login_terms_checkbox": "on",
        },
        follow_redirects=False,
    )
    assert r.status_code == 302, r.text[:500]


def test_store_browser_login_through_hub_oauth(deployment: Deployment) -> None:
    name = "oauthver-v"
    if name not in deployment.accounts:
        deployment.add_account(name, ("clinician",))
    prefix = "/services/cpms-store/"
    with httpx.Client(base_url=deployment.url, trust_env=False, timeout=30) as client:
        _login(client, deployment, name)
        # follows: store oauth_login -> hub authorize (no consent page) -> store callback -> /me
        r = client.get(
            f"{prefix}oauth_login", params={"next": f"{prefix}api/v1/me"}, follow_redirects=True
        )
        assert r.status_code == 200, (r.url, r.text[:500])
        assert str(r.url.path) == f"{prefix}api/v1/me"
        assert r.json()["name"] == name
        assert client.cookies.get("cpms-xsrf")
        # the OAuth state cookie is spent, the token cookie is HttpOnly and set
        assert "cpms-oauth-state" not in {c.name for c in client.cookies.jar if c.value}
        # the cookie alone is no good for a write: the double-submit header is needed
        resp = client.post(f"{prefix}api/v1/cases", json={})
        assert resp.status_code == 403, resp.text[:300]
        assert "xsrf" in resp.text.lower()
        # a callback whose state does not match is refused
        bad = client.get(f"{prefix}oauth_callback", params={"code": "x", "state": "nope"})
        assert bad.status_code == 403


def test_review_apps_login_through_hub_oauth(deployment: Deployment) -> None:
    """Panel's generic OAuth against this hub: login -> authorize -> Panel's callback."""
    name = "oauthver-r"
    if name not in deployment.accounts:
        deployment.add_account(name, ("panel-member",))
    with httpx.Client(base_url=deployment.url, trust_env=False, timeout=30) as client:
        _login(client, deployment, name)
        r = client.get("/services/cpms-review/", follow_redirects=True)
        assert r.status_code == 200, (r.url, r.text[:500])
        assert str(r.url.path) == "/services/cpms-review/"
        assert "bokeh" in r.text.lower()
        assert client.cookies.get("access_token", path="/services/cpms-review/")
        # a callback whose state does not match is refused
        bad = client.get("/services/cpms-review/login", params={"code": "x", "state": "nope"})
        assert bad.status_code in (400, 401, 403)


def test_review_apps_token_carries_the_persons_scopes_only(deployment: Deployment) -> None:
    """The token this hub issues to the review apps at login: the review and store access
    scopes and the CPMS scopes the person holds, none they do not (the apps call the store
    with it, so its scopes decide what the workspace can read)."""
    from cpms_hub.hubconfig import REVIEW_ACCESS, STORE_ACCESS
    from cpms_hub.policy import Scope

    name = "oauthver-s"
    if name not in deployment.accounts:
        deployment.add_account(name, ("panel-member",))
    with httpx.Client(base_url=deployment.url, trust_env=False, timeout=30) as client:
        _login(client, deployment, name)
        r = client.get("/services/cpms-review/", follow_redirects=True)
        assert r.status_code == 200, (r.url, r.text[:500])
    admin_token = deployment.settings().admin_token_file.read_text().strip()
    r = httpx.get(
        f"{deployment.url}/hub/api/users/{name}/tokens",
        headers={"Authorization": f"token {admin_token}"},
        timeout=30,
        trust_env=False,
    )
    r.raise_for_status()
    # every token is listed in "api_tokens" (OAuth ones included, with their client)
    issued = [t for t in r.json()["api_tokens"] if REVIEW_ACCESS in t.get("scopes", ())]
    assert len(issued) == 1, r.json()
    scopes = set(issued[0]["scopes"])
    assert {STORE_ACCESS, Scope.CASES_READ} <= scopes, scopes
    for other in (Scope.CASES_WRITE, Scope.PANELS, Scope.COHORTS, Scope.ACCOUNTS, Scope.AUDIT):
        assert other not in scopes, scopes
