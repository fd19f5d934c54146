"""Image-scoped viewer grants: issue, verify, expiry, scope, tampering, constant-time check."""

from __future__ import annotations

import base64
import hmac
import json

import pytest

from cpms_hub.crypto import Keyring
from cpms_hub.domain.errors import AuthenticationError
from cpms_hub.service import grants as grants_module
from cpms_hub.service.grants import GRANT_HEADER, GrantIssuer, grant_secret

SECRET = b"s" * 32
CASE = "9d194ad4-497e-463e-b1b9-cdc8aca69631"
IMAGE = "ed81b641-e40f-4e77-8eb8-a21218519897"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _payload(grant: str) -> list:
    body = grant.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_issue_and_verify() -> None:
    clock = Clock()
    issuer = GrantIssuer(SECRET, ttl=300, clock=clock)
    grant = issuer.issue("clin-a", CASE, IMAGE)
    assert all(c.isalnum() or c in "-_." for c in grant)  # URL-safe, header-safe
    claims = issuer.verify(grant, CASE, IMAGE)
    assert (claims.user, claims.case_id, claims.image_id) == ("clin-a", CASE, IMAGE)
    assert claims.expires_at == int(clock.now) + 300 == issuer.expires_at(grant)
    assert claims.nonce


def test_each_grant_has_its_own_nonce() -> None:
    issuer = GrantIssuer(SECRET, clock=Clock())
    a, b = issuer.issue("u", CASE, IMAGE), issuer.issue("u", CASE, IMAGE)
    assert a != b
    assert issuer.verify(a, CASE, IMAGE).nonce != issuer.verify(b, CASE, IMAGE).nonce


def test_expiry() -> None:
    clock = Clock()
    issuer = GrantIssuer(SECRET, ttl=60, clock=clock)
    grant = issuer.issue("u", CASE, IMAGE)
    clock.now += 59
    issuer.verify(grant, CASE, IMAGE)
    clock.now += 1
    with pytest.raises(AuthenticationError) as err:
        issuer.verify(grant, CASE, IMAGE)
    assert err.value.reasons == (f"{GRANT_HEADER}: expired",)


@pytest.mark.parametrize(
    ("case_id", "image_id"),
    [
        (CASE, "00000000-0000-0000-0000-000000000000"),
        ("00000000-0000-0000-0000-000000000000", IMAGE),
    ],
)
def test_wrong_image_or_case(case_id: str, image_id: str) -> None:
    issuer = GrantIssuer(SECRET, clock=Clock())
    grant = issuer.issue("u", CASE, IMAGE)
    with pytest.raises(AuthenticationError):
        issuer.verify(grant, case_id, image_id)


def test_other_secret_refused() -> None:
    grant = GrantIssuer(SECRET, clock=Clock()).issue("u", CASE, IMAGE)
    with pytest.raises(AuthenticationError):
        GrantIssuer(b"t" * 32, clock=Clock()).verify(grant, CASE, IMAGE)


def test_tampering_refused() -> None:
    clock = Clock()
    issuer = GrantIssuer(SECRET, clock=clock)
    grant = issuer.issue("clin-b", CASE, IMAGE)
    body, tag = grant.split(".")
    # a longer life or another user, with the old tag
    payload = _payload(grant)
    for forged in (
        [*payload[:4], payload[4] + 3600, payload[5]],
        [payload[0], "clin-a", *payload[2:]],
    ):
        text = _b64(json.dumps(forged, separators=(",", ":")).encode())
        with pytest.raises(AuthenticationError):
            issuer.verify(f"{text}.{tag}", CASE, IMAGE)
    # a flipped tag character, a truncated grant, garbage, nothing
    flipped = tag[:-2] + ("A" if tag[-2] != "A" else "B") + tag[-1]
    for bad in (f"{body}.{flipped}", grant[:-4], body, "a.b.c", "!!.??", "", None, "x" * 5000):
        with pytest.raises(AuthenticationError):
            issuer.verify(bad, CASE, IMAGE)


def test_reasons_do_not_echo_the_grant() -> None:
    issuer = GrantIssuer(SECRET, clock=Clock())
    grant = issuer.issue("u", CASE, IMAGE)
    with pytest.raises(AuthenticationError) as err:
        issuer.verify(grant, CASE, "other")
    assert grant not in str(err.value) and all(grant not in r for r in err.value.reasons)


def test_tag_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(grants_module.hmac, "compare_digest", spy)
    issuer = GrantIssuer(SECRET, clock=Clock())
    grant = issuer.issue("u", CASE, IMAGE)
    issuer.verify(grant, CASE, IMAGE)
    assert calls and len(calls[0][0]) == 32  # the HMAC-SHA256 tag itself
    calls.clear()
    with pytest.raises(AuthenticationError):
        issuer.verify(grant[:-3] + "AAA", CASE, IMAGE)
    assert len(calls) == 1  # refused on the tag, before the payload is looked at


def test_short_secret_refused() -> None:
    with pytest.raises(ValueError):
        GrantIssuer(b"short")


def test_grant_secret_from_keyring(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "keyring.json"
    Keyring.generate(path)
    keyring = Keyring.load(path)
    secret = grant_secret(keyring)
    assert len(secret) == 32
    assert secret == grant_secret(Keyring.load(path))  # stable across service restarts
    assert secret != keyring.index_key  # its own key, not the blind-index key
    Keyring.generate(tmp_path / "other.json")
    assert secret != grant_secret(Keyring.load(tmp_path / "other.json"))
