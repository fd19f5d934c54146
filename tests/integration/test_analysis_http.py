"""Anonymised analysis through the real hub, proxy and store.

A data scientist gets k-anonymous cohorts (JSON and Parquet), reports and
anonymised similar-case hits, and is refused every pseudonymised route with
reasons; the others are refused the anonymised routes; a withdrawn registry
consent drops the case from the next export; coordinators export their own
network's cases as EU RD Platform common data elements; every answer's
SHA-256 is in the audit trail.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re

import httpx
import pyarrow.parquet as pq
import pytest

from cpms_hub.exports.registry import CDE_COLUMNS
from cpms_hub.service import ROUTES_DOC
from tests.conftest import MATRIX_ACCOUNTS
from tests.integration.analysis_seed import seed_cases

pytestmark = pytest.mark.deployment

ANALYSIS = {
    ("POST", "/analysis/cohort"),
    ("POST", "/analysis/report"),
    ("POST", "/analysis/similar"),
    ("GET", "/exports/registry.csv"),
}
#: routes any account may call: no case data behind them
OPEN = {("GET", "/health"), ("GET", "/openapi.json"), ("GET", "/me")}


@pytest.fixture(scope="module")
def seeded(deployment, tokens):
    cases = seed_cases(deployment, tokens["clin-a"], 12)
    # a case whose patient refused registries: never studied
    refused = seed_cases(deployment, tokens["clin-a"], 1, registries=False, tag="NOREG")
    return cases, refused[0]


def call(deployment, token, method, path, headers_extra=None, **kwargs) -> httpx.Response:  # noqa: ANN001
    headers = {"Authorization": f"token {token}"} if token else {}
    headers.update(headers_extra or {})
    return httpx.request(
        method, deployment.api + path, headers=headers, trust_env=False, timeout=120, **kwargs
    )


def cohort(deployment, tokens, **body) -> httpx.Response:  # noqa: ANN001
    return call(deployment, tokens["sci-d"], "POST", "/analysis/cohort", json=body)


def audit_entries(deployment, tokens, action: str) -> list[dict]:
    r = call(deployment, tokens["audit-u"], "GET", "/audit", params={"limit": 10000})
    assert r.status_code == 200, r.text
    return [e for e in r.json() if e["action"] == action]


def test_data_scientist_gets_a_k_anonymous_cohort(deployment, tokens, seeded) -> None:
    cases, refused = seeded
    r = cohort(deployment, tokens, k=5)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "private, no-store"
    assert r.headers["x-cpms-sha256"] == hashlib.sha256(r.content).hexdigest()
    body = r.json()
    s = body["summary"]
    assert s["k"] == 5 and s["cases_in"] >= len(cases)
    assert body["columns"] == list(body["data"])
    columns = body["data"].values()
    rows = [dict(zip(body["data"], v, strict=True)) for v in zip(*columns, strict=True)]
    assert s["cases_out"] == len(rows) and s["cases_out"] >= 5
    classes: dict = {}
    for row in rows:
        key = json.dumps([row[q] for q in s["quasi_identifiers"]])
        classes[key] = classes.get(key, 0) + 1
    assert min(classes.values()) >= 5
    # nothing that points back at a pseudonymised record leaves
    text = r.text
    for c in [*cases, refused]:
        assert c.id not in text and c.pseudonym not in text
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", text)
    entry = audit_entries(deployment, tokens, "cohort.export")[0]
    assert entry["actor"] == "sci-d" and entry["case_id"] is None
    assert hashlib.sha256(r.content).hexdigest() in entry["detail"]
    assert '"k":5' in entry["detail"]


def test_parquet_cohort_carries_its_summary(deployment, tokens, seeded) -> None:
    r = cohort(deployment, tokens, k=3, fields=["sex", "region", "diagnosis"], format="parquet")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(r.content))
    assert table.column_names == ["sex", "region", "diagnosis"]
    summary = json.loads(table.schema.metadata[b"cpms.summary"])
    assert summary == json.loads(r.headers["x-cpms-cohort-summary"])
    assert summary["k"] == 3 and table.num_rows == summary["cases_out"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"k": 1}, "k: must be at least 2"),
        ({"fields": ["age", "sex"]}, "fields: unknown column 'age'"),
        ({"fields": ["sex", "region"], "quasi_identifiers": ["sex"]}, "region is exported"),
        ({"k": 999, "max_suppression": 0}, "cannot reach k=999"),
        ({"k": 5, "shoe_size": 3}, "shoe_size: unknown field"),
    ],
)
def test_bad_cohort_requests_are_refused_with_the_field(deployment, tokens, seeded, body, says):
    r = cohort(deployment, tokens, **body)
    assert r.status_code == 422, r.text
    assert any(says in reason for reason in r.json()["reasons"]), r.json()


def test_withdrawn_registry_consent_drops_the_case_from_the_next_export(
    deployment, tokens, seeded
) -> None:
    extra = seed_cases(deployment, tokens["clin-a"], 1, tag="WD")[0]
    before = cohort(deployment, tokens, fields=["sex"]).json()["summary"]["cases_in"]
    r = call(
        deployment,
        tokens["clin-a"],
        "POST",
        f"/cases/{extra.id}/consents/{extra.consent_id}/withdraw",
        json={"scope": "registries", "reason": "the patient asked"},
    )
    assert r.status_code == 200, r.text
    after = cohort(deployment, tokens, fields=["sex"]).json()["summary"]["cases_in"]
    assert after == before - 1


def test_report_hides_small_cells(deployment, tokens, seeded) -> None:
    r = call(deployment, tokens["sci-d"], "POST", "/analysis/report", json={})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["cases"] >= 12
    for cell in data["counts"]["cells"] + data["status"]["cells"]:
        assert cell["count"] is None or cell["count"] == 0 or cell["count"] >= 5
    assert data["time_to_outcome"]["outcomes"] >= 6
    # signed outcomes without a follow-up yet: counted as such, never left out
    table = data["outcomes_by_treatment"]
    assert table["available"] is True
    assert ["not recorded", "pending"] in [c["key"] for c in table["cells"]]
    entry = audit_entries(deployment, tokens, "cohort.report")[0]
    assert hashlib.sha256(r.content).hexdigest() in entry["detail"]


def test_similar_cases_anonymised_for_the_data_scientist(deployment, tokens, seeded) -> None:
    cases, _ = seeded
    query = list(cases[4].phenotypes)
    r = call(deployment, tokens["sci-d"], "POST", "/analysis/similar", json={"hpo_terms": query})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["mode"] == "anonymised" and data["hits"]
    assert [h["hit"] for h in data["hits"]] == list(range(1, len(data["hits"]) + 1))
    assert all(set(h) == {"hit", "score", "shared"} for h in data["hits"])
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", r.text)


def test_similar_cases_for_the_clinician_name_the_cases(deployment, tokens, seeded) -> None:
    cases, _ = seeded
    target = cases[5]
    r = call(
        deployment,
        tokens["clin-a"],
        "POST",
        "/analysis/similar",
        json={"hpo_terms": list(target.phenotypes), "top": 3},
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["mode"] == "cases"
    # an exact copy scores highest; several seeded cases may share the same terms
    best = data["hits"][0]["score"]
    assert target.id in {h["case_id"] for h in data["hits"] if h["score"] == best}
    assert {s["query"] for s in data["hits"][0]["shared"]} == set(target.phenotypes)
    # clin-b sees none of clin-a's cases
    other = call(
        deployment,
        tokens["clin-b"],
        "POST",
        "/analysis/similar",
        json={"hpo_terms": list(target.phenotypes)},
    ).json()
    assert not {h["case_id"] for h in other["hits"]} & {c.id for c in cases}
    entries = audit_entries(deployment, tokens, "cases.similar")
    assert {h["case_id"] for h in data["hits"]} <= {e["case_id"] for e in entries}


def test_similar_refuses_unknown_terms(deployment, tokens, seeded) -> None:
    r = call(
        deployment,
        tokens["sci-d"],
        "POST",
        "/analysis/similar",
        json={"hpo_terms": ["HP:9999999"]},
    )
    assert r.status_code == 422 and r.json()["reasons"][0].startswith("hpo_terms:")


def test_coordinator_exports_the_registry_csv_of_their_network(deployment, tokens, seeded):
    cases, refused = seeded
    r = call(deployment, tokens["coord-n"], "GET", "/exports/registry.csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == list(CDE_COLUMNS)
    pseudonyms = {row["1.1 Pseudonym"] for row in rows}
    assert {c.pseudonym for c in cases} <= pseudonyms
    assert refused.pseudonym not in pseudonyms
    # another network's coordinator gets only the header
    other = call(deployment, tokens["coord-x"], "GET", "/exports/registry.csv")
    assert other.status_code == 200 and other.text.strip() == ",".join(
        f'"{c}"' if "," in c else c for c in CDE_COLUMNS
    )
    entries = audit_entries(deployment, tokens, "registry.export")
    assert {c.id for c in cases} <= {e["case_id"] for e in entries}


ANON_CELLS = [(method, path, user) for method, path in sorted(ANALYSIS) for user in MATRIX_ACCOUNTS]
ALLOWED = {
    ("POST", "/analysis/cohort"): {"sci-d"},
    ("POST", "/analysis/report"): {"sci-d"},
    ("POST", "/analysis/similar"): {"sci-d", "clin-a", "clin-b", "panel-p", "coord-n", "coord-x"},
    ("GET", "/exports/registry.csv"): {"coord-n", "coord-x"},
}
BODIES = {
    "/analysis/cohort": {"k": 5, "fields": ["sex"]},
    "/analysis/report": {},
    "/analysis/similar": {"hpo_terms": ["HP:0001250"]},
}


@pytest.mark.parametrize(("method", "path", "user"), ANON_CELLS)
def test_who_reaches_the_analysis_routes(deployment, tokens, seeded, method, path, user):
    r = call(deployment, tokens[user], method, path, json=BODIES.get(path))
    if user in ALLOWED[(method, path)]:
        assert r.status_code == 200, (user, r.text)
    else:
        assert r.status_code == 403, (user, r.text)
        assert r.json()["reasons"], r.text
    assert call(deployment, None, method, path, json=BODIES.get(path)).status_code == 401


def _fill(path: str, case_id: str) -> str:
    values = {
        "case_id": case_id,
        "hpo_id": "HP:0001250",
        "name": "clin-a",
        "verb": "approve",
        "level": "0",
        "col": "0",
        "row": "0",
        "n": "1",
        "frames": "1",
        "selection": "0",
        "answer": "accept",
        "action": "close",
    }
    return re.sub(
        r"\{(\w+)\}", lambda m: values.get(m.group(1), "00000000-0000-4000-8000-000000000000"), path
    )


#: a well-formed body for each route that takes one: the refusal must be about who calls
VALID_BODIES = {
    ("POST", "/cases"): {"title": "t"},
    ("POST", "/cases/lookup"): {"pseudonym": "AN-1"},
    ("PATCH", "/cases/{case_id}"): {"title": "t"},
    ("POST", "/cases/{case_id}/uploads"): {"name": "a.txt", "size": 1, "media_type": "text/plain"},
    ("POST", "/cases/{case_id}/consents"): {
        "scopes": ["registries"],
        "form_version": "v1",
        "language": "en",
        "signed_on": "2026-01-01",
    },
    ("POST", "/cases/{case_id}/consents/{consent_id}/withdraw"): {
        "scope": "registries",
        "reason": "r",
    },
    ("POST", "/cases/{case_id}/slides"): {"file_id": "00000000-0000-4000-8000-000000000000"},
    ("POST", "/cases/{case_id}/dicom/imports"): {"file_id": "00000000-0000-4000-8000-000000000000"},
    ("POST", "/cases/{case_id}/slides/{slide_id}/annotations"): {
        "kind": "point",
        "points": [[1, 1]],
        "comment": "c",
    },
    ("PUT", "/accounts/{name}/expertise"): {"expertise": ["ORPHA:558"]},
    ("PUT", "/cases/{case_id}/contributions/mine"): {"body": "opinion"},
    ("POST", "/cases/{case_id}/messages"): {"body": "message"},
    ("POST", "/cases/{case_id}/information-requests"): {"question": "q"},
    ("POST", "/cases/{case_id}/information-requests/{request_id}/answer"): {"answer": "a"},
    ("POST", "/cases/{case_id}/meetings"): {"title": "t", "starts_at": "2030-01-01T10:00:00Z"},
    ("PUT", "/cases/{case_id}/meetings/{meeting_id}/record"): {"minutes": "m", "attended": []},
    ("PUT", "/cases/{case_id}/outcome"): {
        "diagnosis_code": "ORPHA:558",
        "diagnosis_label": "Marfan syndrome",
        "treatment_plan": "t",
        "follow_up": "2030-01-01",
    },
    ("PUT", "/cases/{case_id}/follow-up"): {"treatment": "medicinal", "result": "improved"},
    ("PUT", "/cases/{case_id}/panel"): {
        "members": [{"user": "panel-p", "role": "lead"}],
        "deadline": "2030-01-01T00:00:00Z",
    },
}

#: routes about the caller's own inbox and panels: a data scientist has none, so they
#: answer with nothing (never another person's or a case's data)
PERSONAL = {
    ("GET", "/invitations"),
    ("GET", "/notifications"),
    ("POST", "/notifications/{notification_id}/read"),
    ("GET", "/panels"),
}
#: routes that answer only to an image grant, which a data scientist can never obtain
GRANT_ONLY_SUFFIXES = ("/dzi", ".jpeg", "/meta", "/frames/{n}", "/rendered", "/slices/{selection}")

PSEUDONYMISED = [
    (m, p) for m, p in ROUTES_DOC if (m, p) not in ANALYSIS | OPEN and not p.startswith("/vocab/")
]


@pytest.mark.parametrize(("method", "path"), PSEUDONYMISED)
def test_data_scientist_never_reaches_a_pseudonymised_route(
    deployment, tokens, seeded, method, path
):
    cases, _ = seeded
    kwargs = {"json": VALID_BODIES.get((method, path), {})}
    if path.endswith(("/files", "/chunk")):
        kwargs = {
            "content": b"bytes",
            "headers_extra": {"X-CPMS-Filename": "a.txt", "Upload-Offset": "0"},
        }
    r = call(deployment, tokens["sci-d"], method, _fill(path, cases[0].id), **kwargs)
    if (method, path) in PERSONAL:
        assert r.status_code in (200, 404), (path, r.status_code, r.text)
        if r.status_code == 200:
            assert r.json() == [], r.text
        return
    if path.endswith(GRANT_ONLY_SUFFIXES) and "/dicomweb/" not in path:
        assert r.status_code in (401, 403), r.text
    else:
        assert r.status_code == 403, (path, r.status_code, r.text)
    if method != "HEAD":  # a HEAD answer has no body
        assert r.json()["reasons"], r.text
