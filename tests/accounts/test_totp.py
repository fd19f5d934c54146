"""RFC 6238 codes: window, replay refusal, provisioning URI (no database)."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp

from cpms_hub.accounts import totp

NOW = 1_700_000_015.0  # a fixed instant, mid-step


def test_new_secret_is_160_bit_base32() -> None:
    secret = totp.new_secret()
    assert len(base64.b32decode(secret)) == 20
    assert secret != totp.new_secret()


def test_current_code_matches_pyotp() -> None:
    secret = totp.new_secret()
    assert totp.current_code(secret, for_time=NOW) == pyotp.TOTP(secret).at(NOW)


def test_verify_returns_step_within_window() -> None:
    secret = totp.new_secret()
    step = totp.current_step(NOW)
    for offset in (-1, 0, 1):
        code = pyotp.TOTP(secret).at(NOW + 30 * offset)
        assert totp.verify(secret, code, 0, for_time=NOW) == step + offset
    too_old = pyotp.TOTP(secret).at(NOW - 60)
    too_new = pyotp.TOTP(secret).at(NOW + 60)
    assert totp.verify(secret, too_old, 0, for_time=NOW) is None
    assert totp.verify(secret, too_new, 0, for_time=NOW) is None


def test_reused_or_older_step_is_refused() -> None:
    secret = totp.new_secret()
    code = totp.current_code(secret, for_time=NOW)
    step = totp.verify(secret, code, 0, for_time=NOW)
    assert step is not None
    assert totp.verify(secret, code, step, for_time=NOW) is None
    assert totp.verify(secret, code, step + 1, for_time=NOW) is None
    assert totp.verify(secret, code, step - 1, for_time=NOW) == step


def test_malformed_codes_are_refused() -> None:
    secret = totp.new_secret()
    code = totp.current_code(secret, for_time=NOW)
    assert totp.verify(secret, f"{code[:3]} {code[3:]}", 0, for_time=NOW) is not None
    for bad in (None, "", "12345", "1234567", "abcdef", code + "0", "١٢٣٤٥٦"):
        assert totp.verify(secret, bad, 0, for_time=NOW) is None


def test_provisioning_uri_names_issuer_and_account() -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, "dr-alice")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert unquote(parts.path) == "/CPMS:dr-alice"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["CPMS"]
