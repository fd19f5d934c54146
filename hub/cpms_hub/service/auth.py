"""Who is calling: JupyterHub identifies the token, our accounts table the person.

Notebooks and scripts send their JupyterHub token in the ``Authorization``
header (``token …`` or ``Bearer …``); browsers carry the token the service got
through JupyterHub's OAuth flow in an HttpOnly cookie, and must echo the
``cpms-xsrf`` cookie in an ``X-XSRFToken`` header on any unsafe request
(double-submit), so another site cannot act with the cookie. Tokens are
resolved with :class:`jupyterhub.services.auth.HubOAuth`, which caches replies
by the token's SHA-256 (never the token itself) and never logs it.

The hub's answer says who the token belongs to and which scopes it carries;
our accounts table then says whether the account is active and which roles,
hospital and network it has. Both are read on every request, so a disabled
account is refused at its very next request whatever the hub's cache holds.
No credential appears in a log line or an error.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from cpms_hub.domain import AccountStatus, NotFoundError
from cpms_hub.domain.errors import AuthenticationError, PermissionDeniedError
from cpms_hub.policy import Actor

__all__ = ["Authenticator", "Identity", "XSRF_COOKIE", "XSRF_HEADER"]

XSRF_COOKIE = "cpms-xsrf"
XSRF_HEADER = "x-xsrftoken"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Identity:
    """What the hub vouches for: the user's name and the token's scopes."""

    name: str
    scopes: frozenset[str]


class Authenticator:
    """Turns a request into an :class:`~cpms_hub.policy.Actor`, or raises 401."""

    def __init__(self, hub_auth, accounts, *, service_prefix: str) -> None:  # noqa: ANN001
        self.hub_auth = hub_auth
        self.accounts = accounts
        self.prefix = service_prefix

    def _token_from(self, request: Request) -> tuple[str | None, bool]:
        header = request.headers.get("authorization", "")
        match = self.hub_auth.auth_header_pat.match(header)
        if match:
            return match.group(1).strip(), False
        cookie = request.cookies.get(self.hub_auth.cookie_name)
        return (cookie or None), bool(cookie)

    async def actor(self, request: Request) -> Actor:
        who = await self.identity(request)
        return await run_in_threadpool(self.actor_of, who)

    async def identity(self, request: Request) -> Identity:
        """Who the hub says the credentials belong to (no database: stays on the loop).

        :class:`HubOAuth` caches the hub's answers by the token's SHA-256, so
        this is a dictionary look-up for a token seen in the last minute.
        """
        token, from_cookie = self._token_from(request)
        if not token:
            raise AuthenticationError("no credentials", reasons=("send a JupyterHub token",))
        if from_cookie and request.method not in _SAFE_METHODS:
            sent = request.headers.get(XSRF_HEADER, "")
            expected = request.cookies.get(XSRF_COOKIE, "")
            if not expected or not secrets.compare_digest(sent, expected):
                raise PermissionDeniedError(
                    "xsrf", reasons=(f"cookie-authenticated writes need the {XSRF_HEADER} header",)
                )
        model = await self.hub_auth.user_for_token(token, sync=False)
        if not model or model.get("kind", "user") != "user":
            raise AuthenticationError(
                "unknown token", reasons=("the token is not valid (expired, revoked or unknown)",)
            )
        return Identity(model["name"], frozenset(model.get("scopes", ())))

    def actor_of(self, who: Identity) -> Actor:
        """The :class:`Actor` for ``who``, from our accounts table as it is now.

        Synchronous (it reads the database): the hot routes call it in their own
        worker thread, which saves the request a second hop to the thread pool;
        the others get it through :meth:`actor`. Either way the account is read
        on every request, so a disabled account is refused at its next one.
        """
        try:
            account = self.accounts.get(who.name)
        except NotFoundError:
            raise PermissionDeniedError(
                "no account", reasons=(f"{who.name} has no CPMS account",)
            ) from None
        if account.status is not AccountStatus.ACTIVE:
            # a disabled person's token must stop working at once: treat as not identified
            raise AuthenticationError(
                "account not active", reasons=(f"account {who.name} is {account.status.value}",)
            )
        return Actor(
            name=who.name,
            roles=account.roles,
            hospital=account.hospital,
            network=account.network,
            status=account.status,
            scopes=who.scopes,
        )

    # -- OAuth for browsers ------------------------------------------------

    def login_redirect(self, next_url: str) -> tuple[str, str]:
        """Authorize URL at the hub and the state to keep in a cookie."""
        state = secrets.token_urlsafe(24)
        query = urlencode(
            {
                "client_id": self.hub_auth.oauth_client_id,
                "redirect_uri": self.hub_auth.oauth_redirect_uri,
                "response_type": "code",
                "state": state,
            }
        )
        return f"{self.hub_auth.oauth_authorization_url}?{query}", f"{state}|{next_url}"

    def safe_next(self, next_url: str) -> str:
        # only our own pages: an open redirect would leak the freshly set cookie's session
        if next_url.startswith(self.prefix) and "//" not in next_url and "\\" not in next_url:
            return next_url
        return self.prefix + "api/v1/me"
