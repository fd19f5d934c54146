"""The vocabulary routes over HTTP: shapes, limits, refusals, and that a caller is required.

The app here holds only the vocabulary router and the service's error
handlers. Authentication is replaced by a stub (the real one, through the
hub, is covered by the deployment tests): authenticated calls override
``current_actor``; the others meet an authenticator that refuses everyone.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from cpms_hub.domain import AccountStatus, AuthenticationError, Role
from cpms_hub.policy import Actor
from cpms_hub.service.app import current_actor
from cpms_hub.service.errors import install_error_handlers
from cpms_hub.service.vocab_routes import VOCAB_ROUTES, vocab_router
from cpms_hub.vocab import hpo

ROOT = "/api/v1"


class _RefuseEveryone:
    async def actor(self, request: Request) -> Actor:
        raise AuthenticationError("no credentials", reasons=("send a JupyterHub token",))


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.cpms_auth = _RefuseEveryone()
    app.include_router(vocab_router(ROOT))
    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = _app()
    app.dependency_overrides[current_actor] = lambda: Actor(
        name="clin-a",
        roles=frozenset({Role.CLINICIAN}),
        hospital="Hospital A",
        network="ERN-TEST",
        status=AccountStatus.ACTIVE,
        scopes=frozenset(),
    )
    return TestClient(app)


@pytest.fixture(scope="module")
def anonymous() -> TestClient:
    return TestClient(_app())


def test_hpo_search(client: TestClient) -> None:
    r = client.post(f"{ROOT}/vocab/hpo/search", json={"q": "seiz", "limit": 5})
    assert r.status_code == 200
    hits = r.json()
    assert 1 <= len(hits) <= 5
    assert hits[0] == {
        "id": "HP:0001250",
        "label": "Seizure",
        "matched": "Seizure",
        "synonyms": list(hpo().get("HP:0001250").synonyms),
    }
    r = client.post(f"{ROOT}/vocab/hpo/search", json={"q": "epilep"})
    seizure = next(h for h in r.json() if h["id"] == "HP:0001250")
    assert seizure["matched"] == "Epilepsy"
    assert len(r.json()) <= 20  # the default limit


@pytest.mark.parametrize(
    "body",
    [
        {"q": ""},
        {"q": "x" * 101},
        {"q": "seiz", "limit": 0},
        {"q": "seiz", "limit": 51},
        {"q": "seiz", "patient": "Jane"},
        {},
    ],
    ids=["empty", "too-long", "limit-0", "limit-51", "unknown-field", "missing"],
)
def test_search_bodies_are_checked(client: TestClient, body: dict) -> None:
    for vocabulary in ("hpo", "orpha", "icd10"):
        r = client.post(f"{ROOT}/vocab/{vocabulary}/search", json=body)
        assert r.status_code == 422, (vocabulary, r.text)
        assert r.json()["error"] == "invalid input"
        assert "Jane" not in r.text


def test_hpo_term(client: TestClient) -> None:
    r = client.get(f"{ROOT}/vocab/hpo/HP:0001250")
    assert r.status_code == 200
    term = r.json()
    assert (term["label"], term["obsolete"], term["replaced_by"]) == ("Seizure", False, None)
    assert "Epilepsy" in term["synonyms"] and term["parents"]
    old = client.get(f"{ROOT}/vocab/hpo/HP:0000057").json()
    assert (old["obsolete"], old["replaced_by"]) == (True, "HP:0008665")


def test_hpo_term_unknown_or_malformed(client: TestClient) -> None:
    r = client.get(f"{ROOT}/vocab/hpo/HP:9999999")
    assert r.status_code == 404
    assert r.json()["reasons"] == ["HP:9999999 is not an HPO term"]
    assert client.get(f"{ROOT}/vocab/hpo/seizure").status_code == 422


def test_orpha_search(client: TestClient) -> None:
    r = client.post(f"{ROOT}/vocab/orpha/search", json={"q": "ataxia tel", "limit": 3})
    assert r.status_code == 200
    assert r.json()[0] == {"code": "ORPHA:100", "label": "Ataxia-telangiectasia"}


def test_icd10_search(client: TestClient) -> None:
    r = client.post(f"{ROOT}/vocab/icd10/search", json={"q": "G40.9"})
    assert r.status_code == 200
    assert r.json()[0] == {"code": "G40.9", "label": "Epilepsy, unspecified"}
    r = client.post(f"{ROOT}/vocab/icd10/search", json={"q": "epilep", "limit": 2})
    assert [h["code"] for h in r.json()] == ["G40", "G40.9"]


def test_hgvs_check(client: TestClient) -> None:
    r = client.post(f"{ROOT}/vocab/hgvs/check", json={"hgvs": " NM_000051.4:c.7630-2A>C "})
    assert r.status_code == 200
    assert r.json() == {"valid": True, "normalised": "NM_000051.4:c.7630-2A>C"}
    r = client.post(f"{ROOT}/vocab/hgvs/check", json={"hgvs": "NM_000051.4:c.ABC"})
    assert r.status_code == 200
    answer = r.json()
    assert answer["valid"] is False and "normalised" not in answer
    assert answer["reason"].startswith("is not a valid HGVS variant description")
    assert "ABC" not in r.text
    r = client.post(f"{ROOT}/vocab/hgvs/check", json={"hgvs": "x", "gene": "ATM"})
    assert r.status_code == 422


@pytest.mark.parametrize(("method", "path"), VOCAB_ROUTES)
def test_every_route_needs_a_caller(anonymous: TestClient, method: str, path: str) -> None:
    url = ROOT + path.replace("{hpo_id}", "HP:0001250")
    body = {"hgvs": "NM_000051.4:c.7630-2A>C"} if "hgvs" in path else {"q": "seiz"}
    r = anonymous.request(method, url, json=body if method == "POST" else None)
    assert r.status_code == 401
    assert r.json()["error"] == "authentication required"


def test_routes_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]
    for method, path in VOCAB_ROUTES:
        assert method.lower() in paths[ROOT + path], path
    # search text never travels in a URL
    assert all(not p.endswith("/search") or set(paths[p]) == {"post"} for p in paths)
