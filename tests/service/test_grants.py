"""Image-scoped viewer grants: issue, verify, expiry, scope, tampering, constant-time check."""

from __future__ import annotations

import base64
import hashlib
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


# -- ImageGrants: the grant routes' helper (issue; verify with the first use audited once) --


@pytest.fixture()
def state(tmp_path):
    from cpms_hub.state import init_state
    from tests.deployment import state_settings

    folder = tmp_path / "state"
    st = init_state(state_settings(folder))
    try:
        yield st
    finally:
        st.close()


def _views(state, action: str) -> list:
    from cpms_hub.store.database import session_scope

    with session_scope(state.sessions) as s:
        return [e for e in state.audit.entries(s) if e.action == action]


def test_image_grants_audit_each_grant_once(state) -> None:
    from cpms_hub.service.grants import ImageGrants

    grants = ImageGrants(state, kind="dicom", label="series", scope_prefix="dicom:", ttl=60)
    body = grants.issue("clin-a", CASE, "1.2.3")
    assert body["header"] == GRANT_HEADER and body["ttl"] == 60 and body["expires_at"]
    token = body["grant"]
    assert grants.already_seen(token, CASE, "1.2.3") is None  # not used yet
    for _ in range(3):
        claims = grants.verify(token, CASE, "1.2.3", "127.0.0.1")
        assert claims.user == "clin-a" and claims.image_id == "dicom:1.2.3"
    assert grants.already_seen(token, CASE, "1.2.3") == claims
    views = _views(state, "dicom.view")
    assert len(views) == 1
    assert views[0].detail == f"series=1.2.3 grant={claims.nonce}"
    assert views[0].actor == "clin-a" and views[0].case_id == CASE
    # a second grant is a second view
    grants.verify(grants.issue("clin-a", CASE, "1.2.3")["grant"], CASE, "1.2.3", "")
    assert len(_views(state, "dicom.view")) == 2


def test_image_grants_are_scoped_by_kind_and_image(state) -> None:
    from cpms_hub.service.grants import ImageGrants

    dicom = ImageGrants(state, kind="dicom", label="series", scope_prefix="dicom:")
    slides = ImageGrants(state, kind="slide", label="slide")
    token = dicom.issue("clin-a", CASE, IMAGE)["grant"]
    with pytest.raises(AuthenticationError):
        slides.verify(token, CASE, IMAGE, "")  # same id, another kind of image
    with pytest.raises(AuthenticationError):
        dicom.verify(token, CASE, "other", "")
    with pytest.raises(AuthenticationError):
        dicom.already_seen(None, CASE, IMAGE)
    assert not _views(state, "dicom.view") and not _views(state, "slide.view")


def test_image_grants_forget_a_nonce_whose_audit_failed(state, monkeypatch) -> None:
    from cpms_hub.service.grants import ImageGrants

    grants = ImageGrants(state, kind="slide", label="slide")
    token = grants.issue("clin-a", CASE, IMAGE)["grant"]

    def broken(*_a, **_k):
        raise RuntimeError("database down")

    monkeypatch.setattr(state.audit, "append", broken)
    with pytest.raises(RuntimeError):
        grants.verify(token, CASE, IMAGE, "")
    assert grants.already_seen(token, CASE, IMAGE) is None
    monkeypatch.undo()
    grants.verify(token, CASE, IMAGE, "")
    assert len(_views(state, "slide.view")) == 1


def test_image_grants_seen_set_is_bounded(state) -> None:
    from cpms_hub.service.grants import ImageGrants

    grants = ImageGrants(state, kind="slide", label="slide", max_seen=2)
    tokens = [grants.issue("clin-a", CASE, IMAGE)["grant"] for _ in range(3)]
    for t in tokens:
        grants.verify(t, CASE, IMAGE, "")
    assert grants.already_seen(tokens[0], CASE, IMAGE) is None  # the oldest was let go
    assert grants.already_seen(tokens[2], CASE, IMAGE) is not None


# -- the verified-grant memory (a viewer sends one grant with every tile) --


def test_verified_grants_remembered_by_hash_not_text() -> None:
    issuer = GrantIssuer(SECRET, clock=Clock())
    grant = issuer.issue("u", CASE, IMAGE)
    first = issuer.verify(grant, CASE, IMAGE)
    assert issuer.verify(grant, CASE, IMAGE) is first  # remembered: no second HMAC
    remembered = issuer._verified  # noqa: SLF001
    assert list(remembered) == [hashlib.sha256(grant.encode()).digest()]
    assert all(grant not in repr(k) and grant.split(".")[1] not in repr(k) for k in remembered)


def test_remembered_grant_still_checked_for_scope_and_expiry() -> None:
    clock = Clock()
    issuer = GrantIssuer(SECRET, ttl=60, clock=clock)
    grant = issuer.issue("u", CASE, IMAGE)
    issuer.verify(grant, CASE, IMAGE)
    for case_id, image_id in ((CASE, "other"), ("other", IMAGE)):
        with pytest.raises(AuthenticationError) as err:
            issuer.verify(grant, case_id, image_id)
        assert err.value.reasons == (f"{GRANT_HEADER}: invalid",)
    clock.now += 60
    with pytest.raises(AuthenticationError) as err:
        issuer.verify(grant, CASE, IMAGE)
    assert err.value.reasons == (f"{GRANT_HEADER}: expired",)
    assert not issuer._verified  # noqa: SLF001 - an expired grant is let go


def test_forged_grants_are_not_remembered_and_memory_is_bounded() -> None:
    issuer = GrantIssuer(SECRET, clock=Clock(), max_verified=3)
    grant = issuer.issue("u", CASE, IMAGE)
    body, tag = grant.split(".")
    for bad in (f"{body}.{tag[:-2]}AA", "x" * 40, f"{body}.{body}"):
        with pytest.raises(AuthenticationError):
            issuer.verify(bad, CASE, IMAGE)
    assert not issuer._verified  # noqa: SLF001
    grants = [issuer.issue("u", CASE, IMAGE) for _ in range(5)]
    for g in grants:
        issuer.verify(g, CASE, IMAGE)
    assert len(issuer._verified) == 3  # noqa: SLF001 - the oldest let go first
    issuer.verify(grants[0], CASE, IMAGE)  # forgotten, so checked in full again: still valid


def test_image_grants_audited_once_across_worker_processes(state) -> None:
    """Each worker process has its own ImageGrants (same keyring, so the same secret)."""
    from cpms_hub.service.grants import ImageGrants

    worker_a = ImageGrants(state, kind="slide", label="slide")
    worker_b = ImageGrants(state, kind="slide", label="slide")
    token = worker_a.issue("clin-a", CASE, IMAGE)["grant"]
    for worker in (worker_a, worker_b, worker_a, worker_b):
        assert worker.verify(token, CASE, IMAGE, "").user == "clin-a"  # one secret for both
    assert worker_b.already_seen(token, CASE, IMAGE) is not None
    assert len(_views(state, "slide.view")) == 1
    other = worker_b.issue("clin-a", CASE, IMAGE)["grant"]
    worker_b.verify(other, CASE, IMAGE, "")
    worker_a.verify(other, CASE, IMAGE, "")
    assert len(_views(state, "slide.view")) == 2  # a second grant is a second view


def test_image_grants_let_go_of_a_nonce_without_auditing_it_again(state) -> None:
    from cpms_hub.service.grants import ImageGrants

    grants = ImageGrants(state, kind="slide", label="slide", max_seen=1)
    first, second = (grants.issue("clin-a", CASE, IMAGE)["grant"] for _ in range(2))
    for token in (first, second, first):  # the second pushes the first out of the set
        grants.verify(token, CASE, IMAGE, "")
    assert len(_views(state, "slide.view")) == 2


def _grant_uses(state) -> list[str]:
    from sqlalchemy import select

    from cpms_hub.store.database import session_scope
    from cpms_hub.store.schema import GrantUseRow

    with session_scope(state.sessions, write=False) as s:
        return sorted(s.scalars(select(GrantUseRow.nonce)))


def test_a_grant_first_used_by_another_worker_is_not_audited_again(state) -> None:
    from cpms_hub.service.grants import ImageGrants

    # two processes' routers: the same keyring, each its own memory of nonces
    first = ImageGrants(state, kind="slide", label="slide")
    second = ImageGrants(state, kind="slide", label="slide")
    token = first.issue("clin-a", CASE, IMAGE)["grant"]
    claims = first.verify(token, CASE, IMAGE, "")
    assert second.already_seen(token, CASE, IMAGE) is None  # not in its memory
    assert second.verify(token, CASE, IMAGE, "") == claims
    assert len(_views(state, "slide.view")) == 1
    assert _grant_uses(state) == [claims.nonce]


def test_nonces_of_expired_grants_are_deleted_as_new_ones_are_recorded(state) -> None:
    from cpms_hub.service.grants import ImageGrants

    now = [1_000_000.0]
    grants = ImageGrants(state, kind="dicom", label="series", ttl=60, clock=lambda: now[0])
    old = grants.verify(grants.issue("clin-a", CASE, IMAGE)["grant"], CASE, IMAGE, "")
    assert _grant_uses(state) == [old.nonce]
    now[0] += 61  # the first grant has expired
    new = grants.verify(grants.issue("clin-a", CASE, IMAGE)["grant"], CASE, IMAGE, "")
    assert _grant_uses(state) == [new.nonce]
    assert len(_views(state, "dicom.view")) == 2  # the audit entries stay, of course
