"""The server extension's way to the case store: as this server's user, never as the browser.

A user server holds its owner's JupyterHub token (``JUPYTERHUB_API_TOKEN``)
and the store's address (``CPMS_STORE_URL``), exactly what
:meth:`cpms_widgets.CaseStoreClient.from_env` uses. The handlers run on
Tornado's event loop, so this gateway makes the same calls with an async
HTTP client instead of the blocking one, and hands the store's answers on
unchanged: JSON bodies as they are, refusals as :class:`StoreRefusal` with the
store's own ``status``, ``error`` and ``reasons``. The token goes only into
the ``Authorization`` header and never into a message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from cpms_hub.domain import CpmsError
from cpms_widgets.client import ClientSettings

__all__ = ["StoreGateway", "StoreRefusal", "case_path"]


class StoreRefusal(CpmsError):
    """The store (or the way to it) said no; carries the one error shape of CPMS."""

    def __init__(self, status: int, error: str, reasons: tuple[str, ...] | list[str]) -> None:
        super().__init__(error, reasons=reasons)
        self.status = status
        self.error = error


def case_path(case_id: str, *rest: str) -> str:
    """``/cases/<id>/...`` with the id percent-encoded: a path segment, whatever was sent."""
    return "/".join(("/cases", quote(case_id, safe=""), *rest))


def _refusal(resp: httpx.Response) -> StoreRefusal:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        reasons = [str(r) for r in body.get("reasons") or ()] or [str(body["error"])]
        return StoreRefusal(resp.status_code, str(body["error"]), reasons)
    # not the store's shape (e.g. a route it does not have): say so without echoing the body
    return StoreRefusal(resp.status_code, f"HTTP {resp.status_code}", [f"HTTP {resp.status_code}"])


@dataclass(frozen=True, slots=True)
class StoreGateway:
    """Calls to the store as the user this server belongs to."""

    settings: ClientSettings
    token: str

    @classmethod
    def from_env(cls) -> StoreGateway:
        token = os.environ.get("JUPYTERHUB_API_TOKEN")
        if not token:
            raise StoreRefusal(
                503,
                "store not configured",
                ["JUPYTERHUB_API_TOKEN is not set: this is not a JupyterHub user server"],
            )
        try:
            settings = ClientSettings.from_env()
        except CpmsError as err:
            raise StoreRefusal(503, "store not configured", list(err.reasons)) from None
        return cls(settings, token)

    def __repr__(self) -> str:
        return f"StoreGateway({self.settings.store_url!r})"

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The store's answer to one request; a refusal raises :class:`StoreRefusal`."""
        async with httpx.AsyncClient(
            base_url=self.settings.store_url,
            headers={"Authorization": f"token {self.token}"},
            timeout=self.settings.timeout,
            trust_env=False,
        ) as http:
            try:
                resp = await http.request(method, path, **kwargs)
            except httpx.HTTPError as err:
                # the exception text may carry the URL; the class name says enough
                raise StoreRefusal(
                    502,
                    "store unreachable",
                    [f"the case store did not answer ({type(err).__name__})"],
                ) from None
        if resp.status_code >= 400:
            raise _refusal(resp)
        return resp

    async def get_json(self, path: str) -> Any:
        return (await self.request("GET", path)).json()
