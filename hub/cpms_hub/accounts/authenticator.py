"""The JupyterHub authenticator of CPMS: password plus TOTP against the account registry.

:class:`CpmsAuthenticator` is a thin adapter. Every decision (password,
one-time code, lockout, account status) is made by
:class:`~cpms_hub.accounts.registry.AccountRegistry`; the authenticator maps
the hub's hooks onto it:

* ``authenticate`` — the login form's ``username``, ``password`` and ``otp``
  fields; any refusal is ``None``, so the hub shows its one generic
  "Invalid username or password" message whichever part was wrong;
* ``check_allowed`` — only active accounts (this *is* the allow rule, so
  ``allowed_users`` is not used and the "no allow config" warning is
  silenced);
* ``refresh_user`` — ``True`` while the account is active, ``False`` once it
  is disabled. With a small ``auth_refresh_age`` and ``auth_refresh_strict``
  the hub then refuses the user's cookies and API tokens within seconds;
* ``get_handlers`` — the hub's own ``/login`` plus ``/cpms/request-account``
  and ``/cpms/enrol`` (:mod:`.handlers`).

The registry is built lazily on first use, so importing and configuring the
class (``jupyterhub --help-all``, config validation) needs neither the
database nor the key file. Argon2 and SQLite calls block, so each one runs in
a worker thread and the hub's event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from jupyterhub.auth import Authenticator
from traitlets import Any as AnyTrait
from traitlets import Float, Instance, Integer, Unicode, default

from cpms_hub.domain.accounts import USERNAME_PATTERN
from cpms_hub.domain.errors import CpmsError
from cpms_hub.settings import CpmsSettings

from .registry import AccountRegistry

__all__ = ["CpmsAuthenticator"]


class CpmsAuthenticator(Authenticator):
    """Log staff in with password and TOTP code, checked by the CPMS account registry."""

    db_url = Unicode(
        help=(
            "SQLAlchemy URL of the CPMS case store holding the accounts table. "
            "Defaults to CpmsSettings.db_url (CPMS_DB_URL)."
        ),
    ).tag(config=True)

    @default("db_url")
    def _db_url_default(self) -> str:
        return CpmsSettings(config=self.config).db_url

    key_file = Unicode(
        help=(
            "Key file of the CPMS keyring, used to decrypt TOTP secrets. "
            "Defaults to CpmsSettings.key_file (CPMS_KEY_FILE)."
        ),
    ).tag(config=True)

    @default("key_file")
    def _key_file_default(self) -> str:
        return CpmsSettings(config=self.config).key_file

    max_failures = Integer(
        5,
        help="Consecutive failed logins (wrong password or code) that lock an account.",
    ).tag(config=True)

    lockout_seconds = Float(
        900.0,
        help="How long, in seconds, an account stays locked after max_failures failed logins.",
    ).tag(config=True)

    password_hasher = AnyTrait(
        None,
        allow_none=True,
        help=(
            "An argon2.PasswordHasher to use instead of the RFC 9106 low-memory default "
            "(tests pass a cheap one). Not configurable from files on purpose."
        ),
    )

    registry = Instance(
        AccountRegistry,
        allow_none=True,
        help="The account registry; built from db_url and key_file on first use if unset.",
    )

    @default("request_otp")
    def _request_otp_default(self) -> bool:
        # the stock login form then shows an OTP field even without CPMS's template
        return True

    @default("otp_prompt")
    def _otp_prompt_default(self) -> str:
        return "One-time code"

    @default("any_allow_config")
    def _any_allow_config_default(self) -> bool:
        # check_allowed below is the allow configuration; nothing is missing
        return True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._build_lock = threading.Lock()

    # -- the registry ----------------------------------------------------------------------

    def get_registry(self) -> AccountRegistry:
        """The registry, built on first call (thread-safe: callers run in worker threads)."""
        if self.registry is not None:
            return self.registry
        with self._build_lock:
            if self.registry is None:
                self.registry = self._build_registry()
            return self.registry

    def _build_registry(self) -> AccountRegistry:
        # imported here: building needs the crypto and store layers, configuring does not
        from cpms_hub.crypto import Keyring
        from cpms_hub.store.audit import AuditTrail
        from cpms_hub.store.database import make_engine, make_session_factory
        from cpms_hub.store.keys import DataKeys

        engine = make_engine(self.db_url)
        return AccountRegistry(
            make_session_factory(engine),
            DataKeys(Keyring.load(self.key_file)),
            AuditTrail(),
            max_failures=self.max_failures,
            lockout_seconds=self.lockout_seconds,
            password_hasher=self.password_hasher,
        )

    # -- JupyterHub hooks ------------------------------------------------------------------

    def validate_username(self, username: str) -> bool:
        return bool(super().validate_username(username)) and bool(USERNAME_PATTERN.match(username))

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        name = self.normalize_username((data.get("username") or "").strip())
        password = data.get("password") or ""
        code = data.get("otp") or ""
        client = _client_address(handler)
        try:
            account = await asyncio.to_thread(
                self.get_registry().authenticate, name, password, code, client=client
            )
        except CpmsError as exc:
            # e.g. a TOTP secret that fails to decrypt: refuse, and tell the operator only;
            # a name that is not well formed may be a password typed into the wrong box
            shown = name if USERNAME_PATTERN.match(name) else "-invalid-"
            self.log.error("CPMS login for %r failed: %s", shown, type(exc).__name__)
            return None
        if account is None:
            return None
        return {"name": account.name}

    async def check_allowed(self, username: str, authentication: Any = None) -> bool:
        return await asyncio.to_thread(self.get_registry().is_active, username)

    async def refresh_user(self, user: Any, handler: Any = None) -> bool:
        return await asyncio.to_thread(self.get_registry().is_active, user.name)

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        from .handlers import EnrolHandler, RequestAccountHandler

        return [
            *super().get_handlers(app),
            (r"/cpms/request-account", RequestAccountHandler),
            (r"/cpms/enrol", EnrolHandler),
        ]


def _client_address(handler: Any) -> str:
    request = getattr(handler, "request", None)
    return str(getattr(request, "remote_ip", "") or "")
