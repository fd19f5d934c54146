"""Hub pages for requesting an account and enrolling a TOTP authenticator.

Both pages are reachable without logging in (that is their purpose), so both
are written as if every request were hostile:

* forms are POSTed with the hub's XSRF token, checked by ``BaseHandler``
  before ``post`` runs;
* passwords are never rendered back, logged or put into an error message;
  errors name the field and the rule it broke;
* the request form validates every field with the domain's own rules (by
  building an :class:`AccountRequest` with one field at a time taken from the
  form) so the person sees *all* problems at once, and stores nothing unless
  there are none;
* enrolment refuses with one generic message whatever was wrong, and its
  success page (which shows the TOTP secret) is marked ``no-store``.

The handlers reach the registry through the hub's authenticator, which must
be :class:`~cpms_hub.accounts.authenticator.CpmsAuthenticator`.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jupyterhub.handlers import BaseHandler

from cpms_hub.domain.accounts import AccountRequest
from cpms_hub.domain.errors import AuthenticationError, ConflictError, ValidationError
from cpms_hub.domain.roles import Role

from .passwords import check_password_policy
from .registry import REQUESTABLE_ROLES, AccountRegistry

__all__ = ["RequestAccountHandler", "EnrolHandler", "REQUEST_FIELDS"]

#: form field -> label, in the order the form shows them
REQUEST_FIELDS: dict[str, str] = {
    "name": "User name",
    "email": "E-mail",
    "full_name": "Full name",
    "hospital": "Hospital",
    "network": "Network",
    "roles": "Requested roles",
    "password": "Password",
    "password_confirm": "Password (again)",
}

# values that pass every domain rule; each form field is checked by swapping it in
_VALID_REQUEST: dict[str, Any] = {
    "name": "placeholder",
    "email": "placeholder@example.org",
    "full_name": "placeholder",
    "hospital": "placeholder",
    "network": "placeholder",
    "roles": frozenset({Role.CLINICIAN}),
}

_ROLE_ORDER = [r for r in Role if r in REQUESTABLE_ROLES]

_ENROL_REFUSED = (
    "Enrolment was refused. Check your user name and password. If they are right, your "
    "account may not be approved yet, may already have an authenticator, or may be "
    "locked for a while after failed attempts; the helpdesk can help."
)


class _CpmsPage(BaseHandler):
    """Shared plumbing: the registry and the client's address."""

    @property
    def registry(self) -> AccountRegistry:
        return self.authenticator.get_registry()

    @property
    def client(self) -> str:
        return str(self.request.remote_ip or "")

    def form(self, name: str) -> str:
        # strip everything but passwords, which may legitimately start or end with blanks
        return self.get_body_argument(name, default="", strip=not name.startswith("password"))

    async def page(self, template: str, status: int = 200, **ns: Any) -> None:
        self.set_status(status)
        self.finish(await self.render_template(template, **ns))


class RequestAccountHandler(_CpmsPage):
    """``/cpms/request-account``: anyone may ask for an account; the helpdesk decides."""

    async def get(self) -> None:
        await self._form()

    async def post(self) -> None:
        values = {f: self.form(f) for f in REQUEST_FIELDS if f != "roles"}
        values["name"] = values["name"].lower()
        chosen = self.get_body_arguments("roles")
        errors = _check_request(values, chosen)
        if not errors:
            req = AccountRequest(
                name=values["name"],
                email=values["email"],
                full_name=values["full_name"],
                hospital=values["hospital"],
                network=values["network"],
                roles=frozenset(Role(r) for r in chosen),
            )
            try:
                await asyncio.to_thread(
                    self.registry.request, req, values["password"], client=self.client
                )
            except ConflictError:
                errors.append(("name", "is already taken; choose another user name"))
            except ValidationError as exc:
                errors.append((exc.field, exc.reason))
        if errors:
            await self._form(values, chosen, errors, status=400)
            return
        await self.page("request-account.html", submitted=True, requested_name=values["name"])

    async def _form(
        self,
        values: dict[str, str] | None = None,
        chosen: list[str] | None = None,
        errors: list[tuple[str, str]] | None = None,
        status: int = 200,
    ) -> None:
        shown = {k: v for k, v in (values or {}).items() if not k.startswith("password")}
        await self.page(
            "request-account.html",
            status=status,
            submitted=False,
            values=shown,
            chosen=set(chosen or ()),
            roles=[r.value for r in _ROLE_ORDER],
            errors=[(REQUEST_FIELDS.get(f, f), reason) for f, reason in (errors or [])],
        )


def _check_request(values: dict[str, str], chosen: list[str]) -> list[tuple[str, str]]:
    """Every problem with the form, as (field, reason); empty if it may be submitted."""
    errors: list[tuple[str, str]] = []
    for field in ("name", "email", "full_name", "hospital", "network"):
        try:
            AccountRequest(**{**_VALID_REQUEST, field: values[field]})
        except ValidationError as exc:
            errors.append((field, exc.reason))
    allowed = {r.value for r in REQUESTABLE_ROLES}
    if not chosen:
        errors.append(("roles", "choose at least one role"))
    elif not set(chosen) <= allowed:
        errors.append(("roles", "contains a role that cannot be requested"))
    try:
        check_password_policy(values["password"], username=values["name"])
    except ValidationError as exc:
        errors.append(("password", exc.reason))
    if values["password"] != values["password_confirm"]:
        errors.append(("password_confirm", "does not match the password"))
    return errors


class EnrolHandler(_CpmsPage):
    """``/cpms/enrol``: after approval, get the TOTP secret to load into an app."""

    async def get(self) -> None:
        await self.page("enrol.html", enrolled=False, error=None, username="")

    async def post(self) -> None:
        name = self.form("username").lower()
        password = self.form("password")
        try:
            uri = await asyncio.to_thread(
                self.registry.begin_enrolment, name, password, client=self.client
            )
        except AuthenticationError:
            await self.page(
                "enrol.html", status=403, enrolled=False, error=_ENROL_REFUSED, username=name[:32]
            )
            return
        # the page carries a live secret: no browser or proxy cache may keep it
        self.set_header("Cache-Control", "no-store")
        self.set_header("Pragma", "no-cache")
        secret = parse_qs(urlsplit(uri).query).get("secret", [""])[0]
        await self.page(
            "enrol.html",
            enrolled=True,
            error=None,
            username=name,
            otpauth_uri=uri,
            secret=secret,
            secret_groups=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        )
