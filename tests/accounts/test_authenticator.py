"""CpmsAuthenticator without a running hub, and the page templates.

The authenticator gets a real database and key file; only JupyterHub's own
request handler is stood in for (an object with ``request.remote_ip``), since
that is what the hub passes to ``authenticate``. The templates are rendered
with the same Jinja search path the deployment configures (CPMS templates
first, then JupyterHub's), to check they compile and carry the fields the
authenticator and browser tests rely on.
"""

from __future__ import annotations

import asyncio
import html
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2
import jupyterhub
import pyotp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from cpms_hub.accounts import TEMPLATE_DIR, CpmsAuthenticator
from cpms_hub.accounts.handlers import EnrolHandler, RequestAccountHandler, _check_request
from cpms_hub.crypto import Keyring
from cpms_hub.domain import AccountRequest, Role
from cpms_hub.store.database import make_engine, make_session_factory, migrate, session_scope
from cpms_hub.store.schema import AuditRow

PASSWORD = "correct horse battery staple"


def handler_stub(ip: str = "198.51.100.4") -> Any:
    return SimpleNamespace(request=SimpleNamespace(remote_ip=ip))


@pytest.fixture
def authenticator(tmp_path: Path) -> CpmsAuthenticator:
    db_url = f"sqlite:///{tmp_path}/t.sqlite"
    engine = make_engine(db_url)
    migrate(engine)
    engine.dispose()
    Keyring.generate(tmp_path / "k.json")
    auth = CpmsAuthenticator(
        db_url=db_url,
        key_file=str(tmp_path / "k.json"),
        max_failures=3,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1),
    )
    return auth


def seed(auth: CpmsAuthenticator, name: str = "dr-alice") -> str:
    secret = pyotp.random_base32()
    auth.get_registry().create_active(
        AccountRequest(
            name=name,
            email=f"{name}@hospital.example",
            full_name="Dr Alice",
            hospital="St Elsewhere",
            network="ERN-X",
            roles=frozenset({Role.CLINICIAN}),
        ),
        PASSWORD,
        by="test",
        totp_secret=secret,
    )
    return secret


def login(auth: CpmsAuthenticator, **data: str) -> Any:
    return asyncio.run(auth.authenticate(handler_stub(), data))


def test_defaults_and_configuration(tmp_path: Path) -> None:
    auth = CpmsAuthenticator()
    assert auth.db_url.startswith("sqlite:///") and auth.key_file.endswith(".json")
    assert auth.registry is None  # nothing is opened until first use
    assert auth.request_otp and auth.otp_prompt == "One-time code"
    assert auth.any_allow_config and not auth.allow_all
    assert (auth.max_failures, auth.lockout_seconds) == (5, 900)
    for trait in ("db_url", "key_file", "max_failures", "lockout_seconds"):
        assert auth.trait_metadata(trait, "config") and auth.trait_metadata(trait, "help")


def test_authenticate_with_password_and_code(authenticator: CpmsAuthenticator) -> None:
    secret = seed(authenticator)
    totp = pyotp.TOTP(secret)
    assert login(authenticator, username="Dr-Alice ", password=PASSWORD, otp=totp.now()) == {
        "name": "dr-alice"
    }
    # the same code again, a wrong password, a missing code: all plain refusals
    assert login(authenticator, username="dr-alice", password=PASSWORD, otp=totp.now()) is None
    assert login(authenticator, username="dr-alice", password="nope nope nope", otp="1") is None
    assert login(authenticator, username="dr-alice", password=PASSWORD) is None
    assert login(authenticator, username="", password="", otp="") is None
    engine = make_engine(authenticator.db_url)
    with session_scope(make_session_factory(engine)) as s:
        entries = list(s.scalars(select(AuditRow).where(AuditRow.action == "account.login")))
    engine.dispose()
    assert [e.outcome for e in entries] == ["allowed", "denied", "denied", "denied", "denied"]
    assert {e.client for e in entries} == {"198.51.100.4"}


def test_lockout_is_configured_from_traits(authenticator: CpmsAuthenticator) -> None:
    secret = seed(authenticator)
    for _ in range(3):
        assert login(authenticator, username="dr-alice", password="wrong password", otp="1") is None
    now = pyotp.TOTP(secret).now()
    assert login(authenticator, username="dr-alice", password=PASSWORD, otp=now) is None


def test_allowed_and_refresh_follow_account_status(authenticator: CpmsAuthenticator) -> None:
    seed(authenticator)
    user = SimpleNamespace(name="dr-alice")
    assert asyncio.run(authenticator.check_allowed("dr-alice", None))
    assert asyncio.run(authenticator.refresh_user(user, handler_stub())) is True
    authenticator.get_registry().disable("dr-alice", by="helpdesk")
    assert not asyncio.run(authenticator.check_allowed("dr-alice", None))
    assert asyncio.run(authenticator.refresh_user(user, handler_stub())) is False
    assert not asyncio.run(authenticator.check_allowed("nobody", None))


def test_username_rules_and_handlers(authenticator: CpmsAuthenticator) -> None:
    assert authenticator.validate_username("dr-alice")
    for bad in ("a", "Dr-Alice", "dr/alice", "1abc", "x" * 40):
        assert not authenticator.validate_username(bad)
    routes = dict(authenticator.get_handlers(SimpleNamespace()))
    assert routes["/cpms/request-account"] is RequestAccountHandler
    assert routes["/cpms/enrol"] is EnrolHandler
    assert "/login" in routes  # the hub's own login handler stays


def test_request_form_checks_every_field() -> None:
    values = {
        "name": "X",
        "email": "not-an-address",
        "full_name": "",
        "hospital": "St Elsewhere",
        "network": "ERN-X",
        "password": "short secret",
        "password_confirm": "different secret",
    }
    errors = dict(_check_request(values, ["helpdesk"]))
    assert set(errors) == {"name", "email", "full_name", "roles", "password_confirm"}
    assert not any("secret" in reason for reason in errors.values())
    values.update(
        name="dr-bob",
        email="bob@h.example",
        full_name="Bob",
        password="dr-bob",
        password_confirm="dr-bob",
    )
    errors = dict(_check_request(values, ["clinician", "coordinator"]))
    assert set(errors) == {"password"}


# -- templates -----------------------------------------------------------------------------


def _env() -> jinja2.Environment:
    hub_templates = Path(jupyterhub.__file__).parents[3] / "share/jupyterhub/templates"
    if not hub_templates.is_dir():  # installed elsewhere (e.g. system prefix)
        import sys

        hub_templates = Path(sys.prefix) / "share/jupyterhub/templates"
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([TEMPLATE_DIR, str(hub_templates)]), autoescape=True
    )


def _render(name: str, **ns: Any) -> str:
    base = {
        "base_url": "/hub/",
        "prefix": "/",
        "static_url": lambda path, **_: f"/hub/static/{path}",
        "xsrf": "XSRF-TOKEN",
        "xsrf_token": "XSRF-TOKEN",
        "user": None,
        "login_url": "/hub/login",
        "logout_url": "/hub/logout",
    }
    return _env().get_template(name).render(**{**base, **ns})


def test_login_template_has_the_cpms_fields() -> None:
    page = _render(
        "login.html",
        authenticator_login_url="/hub/login?next=",
        login_error="Invalid username or password",
        username="dr-alice",
    )
    for marker in (
        'id="username_input"',
        'name="username"',
        'id="password_input"',
        'name="password"',
        'id="otp_input"',
        'name="otp"',
        'autocomplete="one-time-code"',
        'inputmode="numeric"',
        'id="login_submit"',
        'name="_xsrf" value="XSRF-TOKEN"',
        'action="/hub/login?next="',
        'href="/hub/cpms/request-account"',
        'href="/hub/cpms/enrol"',
        "One-time code",
        "Invalid username or password",
    ):
        assert marker in page, marker


def test_request_and_enrol_templates_render() -> None:
    form = _render(
        "request-account.html",
        submitted=False,
        values={"name": "<b>x</b>"},
        chosen={"clinician"},
        roles=["clinician", "panel-member", "coordinator", "data-scientist"],
        errors=[("User name", "must be 2-31 characters")],
    )
    assert 'name="_xsrf" value="XSRF-TOKEN"' in form
    assert "&lt;b&gt;x&lt;/b&gt;" in form and "<b>x</b>" not in form
    assert "User name: must be 2-31 characters" in form
    assert 'value="helpdesk"' not in form
    done = _render("request-account.html", submitted=True, requested_name="dr-bob")
    assert "helpdesk will review" in done

    uri = "otpauth://totp/CPMS:dr-bob?secret=ABCDEFGH&issuer=CPMS"
    shown = _render(
        "enrol.html",
        enrolled=True,
        error=None,
        username="dr-bob",
        otpauth_uri=uri,
        secret="ABCDEFGH",
        secret_groups="ABCD EFGH",
    )
    assert html.escape(uri) in shown and "ABCD EFGH" in shown
    assert 'href="/hub/login?username=dr-bob"' in shown and "6-digit" in shown
    refused = _render("enrol.html", enrolled=False, error="Enrolment was refused.", username="")
    assert "Enrolment was refused." in refused and 'name="_xsrf"' in refused
