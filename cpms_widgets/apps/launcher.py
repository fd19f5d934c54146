"""Start the review apps as the ``cpms-review`` hub-managed service: ``panel serve``.

The hub starts ``python -m cpms_widgets.apps`` with its usual service variables
(``JUPYTERHUB_CLIENT_ID``, ``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_API_URL``,
``JUPYTERHUB_SERVICE_PREFIX``) and ours (``CPMS_REVIEW_PORT``,
``CPMS_REVIEW_ORIGINS``, ``CPMS_STORE_URL``, ``CPMS_REVIEW_SCOPES``). This
module turns them into Panel's generic OAuth login against the hub and runs
``panel serve`` in this process (so the hub's PID is the server's PID).

Secrets travel in ``PANEL_*`` variables, never on the command line (where
``ps`` would show them): the OAuth client secret is the service's API token;
the cookie secret and the key that encrypts the user's access token in
Panel's cookies are new random values at every start (a restart logs
everyone in again, through the hub, without a prompt). Each Panel setting
is given once, either as a variable or as a flag, never both (Panel refuses
duplicates).
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ENTRY", "panel_environment", "panel_argv", "main"]

#: the file ``panel serve`` runs for every browser session
ENTRY = Path(__file__).with_name("review.py")


def _need(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise SystemExit(f"{name} is not set: cpms-review runs as a JupyterHub-managed service")
    return value


def panel_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The ``PANEL_*`` variables (secrets and OAuth endpoints) for ``panel serve``."""
    api_url = _need(env, "JUPYTERHUB_API_URL").rstrip("/")
    prefix = _need(env, "JUPYTERHUB_SERVICE_PREFIX")
    hub_prefix = env.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub"
    return {
        "PANEL_OAUTH_KEY": _need(env, "JUPYTERHUB_CLIENT_ID"),
        "PANEL_OAUTH_SECRET": _need(env, "JUPYTERHUB_API_TOKEN"),
        # the browser goes to the hub's public authorize page (same origin, any host name);
        # this process reaches the token and user endpoints on the hub's internal API
        "PANEL_OAUTH_AUTHORIZE_URL": f"{hub_prefix}/api/oauth2/authorize",
        "PANEL_OAUTH_TOKEN_URL": f"{api_url}/oauth2/token",
        "PANEL_OAUTH_USER_URL": f"{api_url}/user",
        "PANEL_OAUTH_REDIRECT_URI": f"{prefix.rstrip('/')}/login",
        "PANEL_USER_KEY": "name",
        # real hub scopes: Panel's default (openid, email, profile) is refused by the hub
        "PANEL_OAUTH_SCOPE": _need(env, "CPMS_REVIEW_SCOPES"),
        "PANEL_COOKIE_SECRET": secrets.token_urlsafe(48),
        "PANEL_OAUTH_ENCRYPTION": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }


def panel_argv(env: Mapping[str, str]) -> list[str]:
    """``panel serve`` and its flags (no secrets) for the review apps."""
    prefix = _need(env, "JUPYTERHUB_SERVICE_PREFIX").strip("/")
    origins = [o.strip() for o in env.get("CPMS_REVIEW_ORIGINS", "").split(",") if o.strip()]
    argv = [
        "panel",
        "serve",
        str(ENTRY),
        "--address",
        "127.0.0.1",
        "--port",
        _need(env, "CPMS_REVIEW_PORT"),
        "--prefix",
        prefix,
        "--index",
        ENTRY.stem,
        "--oauth-provider",
        "generic",
        # Panel's cookies (user, encrypted access token) stay below the service's prefix
        "--cookie-path",
        f"/{prefix}/",
        "--oauth-expiry-days",
        "1",
        # no --num-threads: with a thread pool, a text box's change and the click on the
        # button after it can be handled out of order (the click would see the old text)
        # GET <prefix>/liveness: the deployment waits for it before it is ready
        "--liveness",
        "--check-unused-sessions",
        "5000",
        "--unused-session-lifetime",
        "60000",
    ]
    for origin in origins:
        argv += ["--allow-websocket-origin", origin]
    return argv


def main() -> None:
    env = dict(os.environ)
    os.environ.update(panel_environment(env))
    argv = panel_argv(env)
    from panel.command import main as panel_main

    sys.argv = argv
    panel_main()


if __name__ == "__main__":
    main()
