"""Every role × every endpoint × own / other hospital's case, through the real hub.

The expected outcome of each cell is written out in :data:`EXPECTED`, so that
a change of policy must change this table. Case A belongs to ``clin-a``
(Hospital A), is submitted and has ``panel-p`` on its panel; case B belongs to
``clin-b`` (Hospital B) and is a draft. ``coord-n`` coordinates the network
of both; ``coord-x`` another network.
"""

from __future__ import annotations

import httpx
import pytest

from cpms_hub.domain import CaseStatus, MemberRole
from cpms_hub.store import AuditContext
from tests.conftest import MATRIX_ACCOUNTS

pytestmark = pytest.mark.deployment

USERS = list(MATRIX_ACCOUNTS)

# endpoint key -> (method, path, body)
ENDPOINTS = {
    "me": ("GET", "/me", None),
    "create": ("POST", "/cases", {"title": "matrix case", "clinical_summary": "s"}),
    "list": ("GET", "/cases", None),
    "lookup": ("POST", "/cases/lookup", {"pseudonym": "MATRIX-A"}),
    "read": ("GET", "/cases/{case}", None),
    "update": ("PATCH", "/cases/{case}", {"clinical_summary": "updated"}),
    "files": ("GET", "/cases/{case}/files", None),
    "upload": ("POST", "/cases/{case}/files", b"file bytes"),
    "accounts": ("GET", "/accounts", None),
    "approve": ("POST", "/accounts/clin-a/approve", None),
    "audit": ("GET", "/audit", None),
}

_ALL_200 = dict.fromkeys(USERS, 200)
_CASE_ROLES = {"clin-a", "clin-b", "panel-p", "coord-n", "coord-x"}


def _only(allowed: dict[str, int]) -> dict[str, int]:
    return {u: allowed.get(u, 403) for u in USERS}


#: (endpoint, case) -> user -> expected status
EXPECTED: dict[tuple[str, str | None], dict[str, int]] = {
    ("me", None): _ALL_200,
    ("create", None): _only({"clin-a": 201, "clin-b": 201}),
    ("list", None): _only(dict.fromkeys(_CASE_ROLES, 200)),
    ("lookup", None): _only(dict.fromkeys(_CASE_ROLES, 200)),
    ("read", "A"): _only({"clin-a": 200, "panel-p": 200, "coord-n": 200}),
    ("read", "B"): _only({"clin-b": 200}),
    ("update", "A"): _only({"clin-a": 200}),
    ("update", "B"): _only({"clin-b": 200}),
    ("files", "A"): _only({"clin-a": 200, "panel-p": 200, "coord-n": 200}),
    ("files", "B"): _only({"clin-b": 200}),
    ("upload", "A"): _only({"clin-a": 201}),
    ("upload", "B"): _only({"clin-b": 201}),
    ("accounts", None): _only({"help-h": 200}),
    # the helpdesk may act, but clin-a is already active: a conflict, not a permission error
    ("approve", None): _only({"help-h": 409}),
    ("audit", None): _only({"audit-u": 200}),
}

CELLS = [
    (endpoint, case, user, expected)
    for (endpoint, case), row in EXPECTED.items()
    for user, expected in row.items()
]


@pytest.fixture(scope="module")
def cases(deployment, tokens) -> dict[str, str]:
    ids = {}
    for key, owner, pseudonym in (("A", "clin-a", "MATRIX-A"), ("B", "clin-b", "MATRIX-B")):
        r = httpx.post(
            f"{deployment.api}/cases",
            json={"title": f"case {key}", "clinical_summary": "x", "pseudonym": pseudonym},
            headers={"Authorization": f"token {tokens[owner]}"},
            trust_env=False,
        )
        assert r.status_code == 201, r.text
        ids[key] = r.json()["id"]
    # the patient of case A consents to panel discussion, on a signed form
    h = {"Authorization": f"token {tokens['clin-a']}"}
    form = httpx.post(
        f"{deployment.api}/cases/{ids['A']}/files",
        content=b"%PDF-1.4\n%%EOF\n",
        headers={**h, "X-CPMS-Filename": "consent.pdf", "Content-Type": "application/pdf"},
        trust_env=False,
    )
    assert form.status_code == 201, form.text
    consent = httpx.post(
        f"{deployment.api}/cases/{ids['A']}/consents",
        json={
            "scopes": ["panel-discussion"],
            "form_version": "v1",
            "language": "en",
            "signed_on": "2026-01-15",
            "form_file_id": form.json()["id"],
        },
        headers=h,
        trust_env=False,
    )
    assert consent.status_code == 201, consent.text
    state = deployment.open_state()
    try:
        ctx = AuditContext(actor="test-setup")
        state.cases.set_status(ids["A"], CaseStatus.SUBMITTED, ctx=ctx)
        state.cases.add_member(ids["A"], "panel-p", MemberRole.PANEL_MEMBER, ctx=ctx)
    finally:
        state.close()
    return ids


def _call(deployment, token: str | None, endpoint: str, case_id: str | None) -> httpx.Response:
    method, path, body = ENDPOINTS[endpoint]
    url = deployment.api + path.format(case=case_id)
    headers = {"Authorization": f"token {token}"} if token else {}
    if isinstance(body, bytes):
        headers["X-CPMS-Filename"] = "matrix.txt"
        return httpx.request(method, url, content=body, headers=headers, trust_env=False)
    return httpx.request(method, url, json=body, headers=headers, trust_env=False)


@pytest.mark.parametrize(("endpoint", "case", "user", "expected"), CELLS)
def test_matrix(deployment, tokens, cases, endpoint, case, user, expected) -> None:
    resp = _call(deployment, tokens[user], endpoint, cases.get(case) if case else None)
    assert resp.status_code == expected, (endpoint, case, user, resp.text)
    if expected == 403:
        body = resp.json()
        assert body["status"] == 403 and body["reasons"], body


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS])
def test_logged_out_is_401(deployment, cases, endpoint) -> None:
    case_id = cases["A"] if "{case}" in ENDPOINTS[endpoint][1] else None
    resp = _call(deployment, None, endpoint, case_id)
    assert resp.status_code == 401
    assert resp.json()["error"] == "authentication required"


def test_bogus_token_is_401(deployment, cases) -> None:
    resp = _call(deployment, "not-a-token", "read", cases["A"])
    assert resp.status_code == 401


def test_lookup_never_reveals_other_hospitals_cases(deployment, tokens, cases) -> None:
    mine = _call(deployment, tokens["clin-a"], "lookup", None).json()
    theirs = _call(deployment, tokens["clin-b"], "lookup", None).json()
    assert [c["id"] for c in mine] == [cases["A"]]
    assert theirs == []


def test_listing_is_filtered(deployment, tokens, cases) -> None:
    listed = {c["id"] for c in _call(deployment, tokens["clin-b"], "list", None).json()}
    assert cases["B"] in listed and cases["A"] not in listed
    coord = {c["id"] for c in _call(deployment, tokens["coord-n"], "list", None).json()}
    # the coordinator sees the submitted case of the network, not the draft
    assert cases["A"] in coord and cases["B"] not in coord
    other_network = {c["id"] for c in _call(deployment, tokens["coord-x"], "list", None).json()}
    assert not {cases["A"], cases["B"]} & other_network
