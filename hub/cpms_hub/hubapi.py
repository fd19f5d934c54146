"""A small client of JupyterHub's REST API for account changes.

When the helpdesk approves an account its person joins the hub groups of
their roles (groups carry the roles and scopes, see :mod:`cpms_hub.hubconfig`);
when an account is disabled its tokens are revoked, its server stopped and
its groups emptied, so nothing the hub issued for it keeps working. The store
service calls this with its own service token; ``cpms-admin`` with the token
of the ``cpms-admin`` service kept in the state folder. Tokens go in headers
only and are never logged.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from cpms_hub.domain import Role

__all__ = ["HubApi", "HubApiError"]


class HubApiError(Exception):
    """The hub refused or could not be reached (message has status and path only)."""


class HubApi:
    def __init__(self, api_url: str, token: str, *, timeout: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._client = httpx.Client(
            headers={"Authorization": f"token {token}"}, timeout=timeout, trust_env=False
        )

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:  # noqa: ANN003
        try:
            resp = self._client.request(method, f"{self.api_url}{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise HubApiError(
                f"hub unreachable for {method} {path}: {type(exc).__name__}"
            ) from None
        if resp.status_code >= 400 and resp.status_code != 404:
            raise HubApiError(f"hub answered {resp.status_code} to {method} {path}")
        return resp

    def ensure_user(self, name: str) -> None:
        if self._call("GET", f"/users/{name}").status_code == 404:
            self._call("POST", f"/users/{name}")

    def set_groups(self, name: str, roles: Iterable[Role]) -> None:
        """Make ``name`` a member of exactly the groups of ``roles``."""
        wanted = {r.value for r in roles}
        self.ensure_user(name)
        for role in Role:
            group = role.value
            if role.value in wanted:
                self._call("POST", f"/groups/{group}/users", json={"users": [name]})
            else:
                self._call("DELETE", f"/groups/{group}/users", json={"users": [name]})

    def revoke_everything(self, name: str) -> None:
        """Revoke all tokens, stop the server, leave all groups."""
        resp = self._call("GET", f"/users/{name}/tokens")
        if resp.status_code == 404:
            return
        for token in resp.json().get("api_tokens", []):
            self._call("DELETE", f"/users/{name}/tokens/{token['id']}")
        self._call("DELETE", f"/users/{name}/server")
        self.set_groups(name, ())

    def new_token(
        self, name: str, *, note: str, scopes: list[str], expires_in: int | None = None
    ) -> str:
        """A token for ``name`` limited to ``scopes`` (for scripts)."""
        self.ensure_user(name)
        body: dict = {"note": note, "scopes": scopes}
        if expires_in:
            body["expires_in"] = expires_in
        resp = self._call("POST", f"/users/{name}/tokens", json=body)
        return resp.json()["token"]
