"""Roles, custom scopes and services of the deployment, defined once.

``jupyterhub_config.py`` applies :func:`configure` to the hub's config; tests
read the same tables to build their authorisation matrix. Each CPMS role is
a JupyterHub group; each group is bound to a JupyterHub role that grants the
``cpms-store`` access scope plus the role's custom scopes (clinicians, panel
members and coordinators may also open the ``cpms-review`` Panel apps, which
log them in through the hub's OAuth and call the store with that user's
token: the apps' OAuth client may hand out the store's access scope and the
custom scopes, never more than the user holds). A user's notebook
token gets the subset of ``SERVER_TOKEN_SCOPES`` its owner holds, so code in a
notebook can call the store as its user and nothing more. The helpdesk never
gets ``access:servers`` (it would open other people's notebooks).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cpms_hub.domain import Role
from cpms_hub.policy.scopes import SCOPE_DESCRIPTIONS, Scope
from cpms_hub.settings import CpmsSettings

__all__ = [
    "STORE_SERVICE",
    "ADMIN_SERVICE",
    "STORE_ACCESS",
    "REVIEW_SERVICE",
    "REVIEW_ACCESS",
    "REVIEW_SCOPES",
    "review_service",
    "store_url",
    "ROLE_SCOPES",
    "SERVER_TOKEN_SCOPES",
    "scopes_for",
    "hub_roles",
    "configure",
]

STORE_SERVICE = "cpms-store"
ADMIN_SERVICE = "cpms-admin"
STORE_ACCESS = f"access:services!service={STORE_SERVICE}"
REVIEW_SERVICE = "cpms-review"
REVIEW_ACCESS = f"access:services!service={REVIEW_SERVICE}"
#: what a token issued to the review apps may carry (the hub grants the user's subset)
REVIEW_SCOPES: list[str] = [REVIEW_ACCESS, STORE_ACCESS, *SCOPE_DESCRIPTIONS]
#: the roles that work in the review apps (case owners answer requests for information there)
_REVIEW_ROLES = frozenset({Role.CLINICIAN, Role.PANEL_MEMBER, Role.COORDINATOR})

ROLE_SCOPES: dict[Role, tuple[str, ...]] = {
    Role.CLINICIAN: (Scope.CASES_READ, Scope.CASES_WRITE),
    Role.PANEL_MEMBER: (Scope.CASES_READ,),
    Role.COORDINATOR: (Scope.CASES_READ, Scope.PANELS),
    Role.DATA_SCIENTIST: (Scope.COHORTS,),
    Role.HELPDESK: (Scope.ACCOUNTS,),
    Role.AUDITOR: (Scope.AUDIT,),
}

SERVER_TOKEN_SCOPES: list[str] = [
    "access:servers!server",
    "users:activity!user",
    STORE_ACCESS,
    *SCOPE_DESCRIPTIONS,
]

#: what the store may do at the hub: keep groups in step with accounts, cut off the disabled
_ACCOUNT_MANAGER_SCOPES = ["admin:users", "admin:groups", "tokens", "admin:servers"]


def scopes_for(roles: frozenset[Role] | set[Role]) -> list[str]:
    """The scopes a script token of someone with ``roles`` should carry."""
    scopes = {STORE_ACCESS}
    for role in roles:
        scopes.update(ROLE_SCOPES[role])
    return sorted(scopes)


def hub_roles() -> list[dict]:
    roles = [
        {
            "name": f"cpms-{role.value}",
            "description": f"CPMS {role.value}",
            "scopes": [
                STORE_ACCESS,
                *scopes,
                *([REVIEW_ACCESS] if role in _REVIEW_ROLES else []),
            ],
            "groups": [role.value],
        }
        for role, scopes in ROLE_SCOPES.items()
    ]
    roles.append(
        {
            "name": "cpms-account-manager",
            "description": "Keeps hub groups and tokens in step with CPMS accounts",
            "scopes": _ACCOUNT_MANAGER_SCOPES,
            "services": [STORE_SERVICE, ADMIN_SERVICE],
        }
    )
    return roles


def _store_environment(settings: CpmsSettings) -> dict[str, str]:
    env = {
        "CPMS_STATE_DIR": settings.state_dir,
        "CPMS_DB_URL": settings.db_url,
        "CPMS_KEY_FILE": settings.key_file,
        "CPMS_BLOB_DIR": settings.blob_dir,
        "CPMS_STORE_PORT": str(settings.store_port),
        "CPMS_MAX_BODY_BYTES": str(settings.max_body_bytes),
    }
    # managed services inherit only a few variables; pass on the rest of ours explicitly
    env.update({k: v for k, v in os.environ.items() if k.startswith("CPMS_") and k not in env})
    return env


def _review_environment(settings: CpmsSettings) -> dict[str, str]:
    return {
        "CPMS_REVIEW_PORT": str(settings.review_port),
        "CPMS_REVIEW_ORIGINS": settings.review_origins,
        # straight to the store on loopback, as user servers reach it
        "CPMS_STORE_URL": store_url(settings),
        "CPMS_REVIEW_SCOPES": ",".join(REVIEW_SCOPES),
    }


def store_url(settings: CpmsSettings) -> str:
    """The store's API root on loopback (user servers and the review apps use it)."""
    return f"http://127.0.0.1:{settings.store_port}/services/{STORE_SERVICE}/api/v1"


def review_service(settings: CpmsSettings) -> dict:
    """The ``cpms-review`` service: ``panel serve`` of the review apps, logged in by hub OAuth.

    The hub gives a managed service its OAuth client id, API token (the client
    secret) and API URL in ``JUPYTERHUB_*`` variables; the launcher
    (``python -m cpms_widgets.apps``) turns them into Panel's generic OAuth
    settings. Panel's generic provider does not send PKCE, so this works only
    while the hub does not set ``oauth_require_pkce`` (JupyterHub 6+).
    """
    return {
        "name": REVIEW_SERVICE,
        "url": f"http://127.0.0.1:{settings.review_port}",
        "command": [sys.executable, "-m", "cpms_widgets.apps"],
        "environment": _review_environment(settings),
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": REVIEW_SCOPES,
        # Panel's login handler is also its OAuth callback
        "oauth_redirect_uri": f"/services/{REVIEW_SERVICE}/login",
        "display": True,
    }


def configure(c, settings: CpmsSettings) -> None:  # noqa: ANN001 - a traitlets Config
    """Apply roles, scopes and services to the hub config ``c``."""
    c.JupyterHub.custom_scopes = {
        scope: {"description": text} for scope, text in SCOPE_DESCRIPTIONS.items()
    }
    c.JupyterHub.load_groups = {role.value: {"users": []} for role in Role}
    c.JupyterHub.load_roles = hub_roles()
    c.Spawner.server_token_scopes = SERVER_TOKEN_SCOPES
    admin_token_file = Path(settings.admin_token_file)
    c.JupyterHub.services = [
        {
            "name": STORE_SERVICE,
            "url": f"http://127.0.0.1:{settings.store_port}",
            "command": [sys.executable, "-m", "cpms_hub.service"],
            "environment": _store_environment(settings),
            "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": [STORE_ACCESS, *SCOPE_DESCRIPTIONS],
            "display": False,
        },
        review_service(settings),
        {
            "name": ADMIN_SERVICE,
            "api_token": admin_token_file.read_text().strip(),
            "display": False,
        },
    ]
