"""``GET /cases/{id}`` served before FastAPI's routing (``service/hot_routes.py``).

Through the real hub and store: the read answers what FastAPI's own case
serialisation gives (the listing's entry for the same case), audits every read
before answering, keeps 401 and 403 apart in the one error shape, and leaves
every other request (deeper paths, other methods) and the OpenAPI document to
FastAPI as before.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.deployment


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def _error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"status", "error", "reasons"} and body["status"] == status
    return body


def _last_read(deployment, case_id: str):  # noqa: ANN202 - an AuditEntry
    state = deployment.open_state()
    try:
        with state.sessions() as s:
            return state.audit.entries(s, case_id=case_id, limit=1)[0]
    finally:
        state.close()


@pytest.fixture(scope="module")
def case_id(deployment, tokens) -> str:
    r = httpx.post(
        f"{deployment.api}/cases",
        json={"title": "hot read", "clinical_summary": "summary"},
        headers=_h(tokens["clin-a"]),
        trust_env=False,
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_a_read_answers_what_fastapi_serialises_and_is_audited(
    deployment, tokens, case_id
) -> None:
    for base in (deployment.direct_api, deployment.api):
        r = httpx.get(f"{base}/cases/{case_id}", headers=_h(tokens["clin-a"]), trust_env=False)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        listed = httpx.get(f"{base}/cases", headers=_h(tokens["clin-a"]), trust_env=False).json()
        assert r.json() == next(c for c in listed if c["id"] == case_id)
    r = httpx.get(
        f"{deployment.direct_api}/cases/{case_id}", headers=_h(tokens["clin-a"]), trust_env=False
    )
    entry = _last_read(deployment, case_id)
    assert (entry.action, entry.outcome, entry.actor) == ("case.read", "allowed", "clin-a")


def test_401_403_404_keep_their_shapes(deployment, tokens, case_id) -> None:
    url = f"{deployment.direct_api}/cases/{case_id}"
    nobody = httpx.get(url, trust_env=False)
    assert _error(nobody, 401)["reasons"]
    assert "WWW-Authenticate" in nobody.headers
    _error(httpx.get(url, headers=_h("not-a-token"), trust_env=False), 401)

    refused = _error(httpx.get(url, headers=_h(tokens["clin-b"]), trust_env=False), 403)
    assert refused["reasons"]
    entry = _last_read(deployment, case_id)
    assert (entry.action, entry.outcome, entry.actor) == ("case.read", "denied", "clin-b")

    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        _error(
            httpx.get(
                f"{deployment.direct_api}/cases/{missing}",
                headers=_h(tokens["clin-a"]),
                trust_env=False,
            ),
            404,
        )


def test_other_requests_still_meet_fastapi(deployment, tokens, case_id) -> None:
    h = _h(tokens["clin-a"])
    files = httpx.get(f"{deployment.direct_api}/cases/{case_id}/files", headers=h, trust_env=False)
    assert files.status_code == 200 and files.json() == []
    _error(
        httpx.request(
            "DELETE", f"{deployment.direct_api}/cases/{case_id}", headers=h, trust_env=False
        ),
        405,
    )
    assert httpx.get(f"{deployment.direct_api}/cases", headers=h, trust_env=False).is_success
    doc = httpx.get(f"{deployment.direct_api}/openapi.json", trust_env=False).json()
    op = doc["paths"]["/services/cpms-store/api/v1/cases/{case_id}"]["get"]
    assert [(p["name"], p["in"]) for p in op["parameters"]] == [("case_id", "path")]
    assert "CaseOut" in str(op["responses"]["200"])
