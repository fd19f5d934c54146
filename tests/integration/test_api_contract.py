"""The store API's contract: one error shape, bad input refused whole, OpenAPI complete.

Also checks that patient data never reaches the deployment's logs: every case
created here carries a marker string, and the hub/proxy/service log is
searched for it at the end.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from cpms_hub.service import ROUTES_DOC

pytestmark = pytest.mark.deployment

MARKER = f"LOGLEAK-{uuid.uuid4().hex[:10]}"


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def _count_cases(deployment, token: str) -> int:
    return len(httpx.get(f"{deployment.api}/cases", headers=_h(token), trust_env=False).json())


def _assert_error_shape(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"status", "error", "reasons"}
    assert body["status"] == status
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["reasons"], list) and all(isinstance(r, str) for r in body["reasons"])
    return body


@pytest.mark.parametrize(
    ("payload", "status", "mentions"),
    [
        (b'{"title": "x", ', 400, "JSON"),
        (b"[1, 2, 3]", 422, "body"),
        (b'{"title": "ok", "colour": "blue"}', 422, "colour: unknown field"),
        (b'{"title": 12}', 422, "title"),
        (b'{"clinical_summary": "no title"}', 422, "title: is required"),
        (b'{"title": ""}', 422, "title"),
        (b'{"title": "' + b"x" * 300 + b'"}', 422, "title"),
    ],
)
def test_bad_case_bodies_are_refused_and_nothing_written(
    deployment, tokens, payload, status, mentions
) -> None:
    before = _count_cases(deployment, tokens["clin-a"])
    resp = httpx.post(
        f"{deployment.api}/cases",
        content=payload,
        headers={**_h(tokens["clin-a"]), "Content-Type": "application/json"},
        trust_env=False,
    )
    body = _assert_error_shape(resp, status)
    assert any(mentions in r for r in body["reasons"]), body
    assert _count_cases(deployment, tokens["clin-a"]) == before


def test_oversize_body_is_413(deployment, tokens) -> None:
    big = b'{"title": "x", "clinical_summary": "' + b"y" * (300 * 1024) + b'"}'
    resp = httpx.post(
        f"{deployment.api}/cases",
        content=big,
        headers={**_h(tokens["clin-a"]), "Content-Type": "application/json"},
        trust_env=False,
    )
    _assert_error_shape(resp, 413)


def test_unknown_route_and_case_use_the_error_shape(deployment, tokens) -> None:
    _assert_error_shape(
        httpx.get(f"{deployment.api}/nowhere", headers=_h(tokens["clin-a"]), trust_env=False), 404
    )
    _assert_error_shape(
        httpx.get(
            f"{deployment.api}/cases/{uuid.uuid4()}", headers=_h(tokens["clin-a"]), trust_env=False
        ),
        404,
    )
    _assert_error_shape(httpx.get(f"{deployment.api}/cases", trust_env=False), 401)


def test_empty_upload_keeps_nothing(deployment, tokens) -> None:
    h = _h(tokens["clin-a"])
    case = httpx.post(
        f"{deployment.api}/cases", json={"title": "upload"}, headers=h, trust_env=False
    ).json()
    resp = httpx.post(
        f"{deployment.api}/cases/{case['id']}/files",
        content=b"",
        headers={**h, "X-CPMS-Filename": "empty.pdf"},
        trust_env=False,
    )
    body = _assert_error_shape(resp, 422)
    assert any("file" in r for r in body["reasons"])
    files = httpx.get(f"{deployment.api}/cases/{case['id']}/files", headers=h, trust_env=False)
    assert files.json() == []


def test_case_round_trip_and_file_download(deployment, tokens) -> None:
    h = _h(tokens["clin-a"])
    created = httpx.post(
        f"{deployment.api}/cases",
        json={
            "title": f"{MARKER} title",
            "clinical_summary": f"{MARKER} summary",
            "pseudonym": f"{MARKER}-P",
        },
        headers=h,
        trust_env=False,
    )
    assert created.status_code == 201
    case = created.json()
    assert case["status"] == "draft" and case["owner"] == "clin-a"
    assert case["hospital"] == "Hospital A"
    data = (MARKER * 5000).encode()
    up = httpx.post(
        f"{deployment.api}/cases/{case['id']}/files",
        content=data,
        headers={**h, "X-CPMS-Filename": f"{MARKER}.txt", "Content-Type": "text/plain"},
        trust_env=False,
    )
    assert up.status_code == 201, up.text
    assert up.json()["name"] == f"{MARKER}.txt" and up.json()["size"] == len(data)
    down = httpx.get(
        f"{deployment.api}/cases/{case['id']}/files/{up.json()['id']}", headers=h, trust_env=False
    )
    assert down.status_code == 200 and down.content == data
    read = httpx.get(f"{deployment.api}/cases/{case['id']}", headers=h, trust_env=False).json()
    assert read["clinical_summary"] == f"{MARKER} summary"


def test_openapi_lists_every_documented_route(deployment) -> None:
    doc = httpx.get(f"{deployment.api}/openapi.json", trust_env=False).json()
    prefix = "/services/cpms-store/api/v1"
    paths = {p.removeprefix(prefix): set(ops) for p, ops in doc["paths"].items()}
    for method, path in ROUTES_DOC:
        if path == "/openapi.json":
            continue
        assert path in paths, path
        assert method.lower() in paths[path], (method, path)
    assert len(paths) == len({p for _, p in ROUTES_DOC if p != "/openapi.json"})


def test_logs_hold_no_patient_data_or_tokens(deployment, tokens) -> None:
    # runs after the round trip above (same module, file order)
    log = deployment.log_text()
    assert log, "the deployment wrote no log at all"
    assert MARKER not in log
    for token in tokens.values():
        assert token not in log
