"""Expert profiles (expertise, time zone) and the TOTP step-up that guards signing."""

from __future__ import annotations

import pyotp
import pytest

from cpms_hub.accounts import AccountRegistry
from cpms_hub.domain import PermissionDeniedError, Role, ValidationError

from .test_registry import PASSWORD, Env, code, env, request_for, wrong_code  # noqa: F401

__all__: list[str] = []


@pytest.fixture
def reg(env: Env) -> AccountRegistry:  # noqa: F811
    return env.registry(max_failures=3)


def expert(reg: AccountRegistry, name: str = "dr-expert") -> str:
    secret = pyotp.random_base32()
    reg.create_active(
        request_for(name, Role.PANEL_MEMBER),
        PASSWORD,
        by="helpdesk",
        totp_secret=secret,
        expertise=["ORPHA:558", " cardiology ", "ORPHA:558"],
        timezone="Europe/Rome",
    )
    return secret


def test_expertise_is_stored_cleaned_and_editable(reg: AccountRegistry) -> None:
    expert(reg)
    a = reg.get("dr-expert")
    assert a.expertise == ("ORPHA:558", "cardiology") and a.timezone == "Europe/Rome"
    a = reg.set_profile("dr-expert", by="helpdesk", expertise=["genetics"])
    assert a.expertise == ("genetics",) and a.timezone == "Europe/Rome"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"expertise": "ORPHA:558"}, "expertise"),
        ({"expertise": [""]}, "expertise"),
        ({"expertise": ["x" * 101]}, "expertise"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_bad_profiles_are_refused(reg: AccountRegistry, kwargs: dict, field: str) -> None:
    expert(reg)
    with pytest.raises(ValidationError) as err:
        reg.set_profile("dr-expert", by="helpdesk", **kwargs)
    assert err.value.field == field
    assert reg.get("dr-expert").expertise == ("ORPHA:558", "cardiology")


def test_step_up_accepts_a_fresh_code_once(reg: AccountRegistry, env: Env) -> None:  # noqa: F811
    secret = expert(reg)
    reg.verify_step_up("dr-expert", code(secret))
    with pytest.raises(PermissionDeniedError) as err:
        reg.verify_step_up("dr-expert", code(secret))
    assert "already used" in err.value.reasons[0]
    assert [r.outcome for r in env.audit("account.step-up")] == ["allowed", "denied"]


def test_wrong_step_up_codes_lock_the_account(reg: AccountRegistry) -> None:
    secret = expert(reg)
    for _ in range(3):
        with pytest.raises(PermissionDeniedError) as err:
            reg.verify_step_up("dr-expert", wrong_code(secret))
    with pytest.raises(PermissionDeniedError) as err:
        reg.verify_step_up("dr-expert", code(secret, 1))
    assert "locked" in err.value.reasons[0]


def test_step_up_without_an_authenticator_is_refused(reg: AccountRegistry) -> None:
    reg.create_active(request_for("dr-new", Role.PANEL_MEMBER), PASSWORD, by="helpdesk")
    with pytest.raises(PermissionDeniedError) as err:
        reg.verify_step_up("dr-new", "123456")
    assert "no authenticator" in err.value.reasons[0]
