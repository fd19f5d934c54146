"""The case desk's server extension (``cpms_lab``) in a real Jupyter server, against the real store.

pytest-jupyter starts a Jupyter server in the test process with the extension
enabled; the store is the session's real deployment, reached the way a user
server reaches it (``CPMS_STORE_URL`` straight to the service, the user's own
token in ``JUPYTERHUB_API_TOKEN``). Requests without Jupyter credentials are
refused before the store is ever called; the store's refusals come through
with its status and reasons; the notebooks the desk writes open with a
connected client (the case notebooks are executed by nbclient).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import nbformat
import pytest
from cpms_lab.case_notebooks import REQUESTS_HEADING
from cpms_lab.summaries import REVIEW_SERVICE as DESK_REVIEW_SERVICE
from nbclient import NotebookClient
from tornado.httpclient import HTTPClientError

from cpms_hub.hubconfig import REVIEW_SERVICE
from tests.deployment import REPO
from tests.review_cases import QUESTION, panel_on_case, sign_outcome

pytestmark = [pytest.mark.deployment]

GET_ROUTES = [
    "cpms/api/cases",
    "cpms/api/cases/00000000-0000-4000-8000-000000000000",
    "cpms/api/cases/00000000-0000-4000-8000-000000000000/outcome.pdf",
    "cpms/api/notifications",
]
POST_ROUTES = [
    "cpms/api/new-case-notebook",
    "cpms/api/case-notebook/00000000-0000-4000-8000-000000000000",
    "cpms/api/notifications/00000000-0000-4000-8000-000000000000/read",
]


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"cpms_lab": True}}}


@pytest.fixture
def as_user(deployment, tokens, monkeypatch):
    """Make the Jupyter server belong to one of the matrix accounts (as a hub would)."""

    def _as(name: str) -> str:
        monkeypatch.setenv("CPMS_STORE_URL", deployment.direct_api)
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", tokens[name])
        return tokens[name]

    return _as


def _store(deployment, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=deployment.api, headers={"Authorization": f"token {token}"}, trust_env=False
    )


def _case(deployment, token: str, title: str = "Invented: desk case") -> dict:
    with _store(deployment, token) as api:
        resp = api.post("/cases", json={"title": title, "clinical_summary": "Invented."})
        assert resp.status_code == 201, resp.text
        return resp.json()


async def _refused(jp_fetch, *parts: str, **kwargs) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(*parts, **kwargs)
    return err.value.code, json.loads(err.value.response.body)


@pytest.mark.parametrize("path", GET_ROUTES)
async def test_unauthenticated_get_is_a_401_in_the_cpms_shape(jp_fetch, as_user, path):
    as_user("clin-a")
    status, body = await _refused(jp_fetch, path, headers={"Authorization": ""})
    assert status == 401
    assert body == {
        "status": 401,
        "error": "unauthorized",
        "reasons": ["sign in to this Jupyter server first"],
    }


@pytest.mark.parametrize("path", POST_ROUTES)
async def test_unauthenticated_post_is_refused_and_writes_nothing(
    jp_fetch, as_user, jp_root_dir, path
):
    as_user("clin-a")
    status, body = await _refused(
        jp_fetch, path, method="POST", body=b"", headers={"Authorization": ""}
    )
    assert status in (401, 403)  # no session (401) or no XSRF token (403): never allowed
    assert body["status"] == status and body["reasons"]
    assert not (jp_root_dir / "cases").exists()


async def test_cases_lists_the_users_cases_with_status_network_and_consent(
    jp_fetch, as_user, deployment
):
    token = as_user("clin-a")
    made = _case(deployment, token, f"Invented: desk {uuid.uuid4().hex[:6]}")
    resp = await jp_fetch("cpms/api/cases")
    rows = {c["id"]: c for c in json.loads(resp.body)}
    assert rows[made["id"]] == {
        "id": made["id"],
        "title": made["title"],
        "network": "ERN-TEST",
        "hospital": "Hospital A",
        "owner": "clin-a",
        "status": "draft",
        "consent": "missing",
        "consent_granted": [],
        "panel_deadline": None,
        "updated_at": made["updated_at"],
        # the review app's workspace of the case (cpms_widgets.apps.home reads ?case=)
        "review_url": f"/services/cpms-review/?case={made['id']}",
    }
    # the clinical content stays in the store: the sidebar gets no summary or patient fields
    assert "clinical_summary" not in rows[made["id"]] and "content" not in rows[made["id"]]

    detail = json.loads((await jp_fetch("cpms/api/cases", made["id"])).body)
    assert detail == {"case": rows[made["id"]], "files": [], "slides": []}


def _listings(deployment, case_id: str) -> int:
    """How often the store's audit trail says the case was listed."""
    state = deployment.open_state()
    try:
        with state.sessions() as s:
            entries = state.audit.entries(s, limit=100_000)
        return sum(1 for e in entries if e.action == "case.list" and e.case_id == case_id)
    finally:
        state.close()


async def test_polling_lists_the_cases_again_only_when_they_changed(jp_fetch, as_user, deployment):
    token = as_user("clin-a")
    case = _case(deployment, token, "Invented: polled")
    with _store(deployment, token) as api:
        first = api.get("/cases")
        etag = first.headers["ETag"]
        # the store's own answer: 304 and no listing while the tag is current
        assert api.get("/cases", headers={"If-None-Match": etag}).status_code == 304
        assert api.get("/cases", headers={"If-None-Match": '"other"'}).status_code == 200

    before = _listings(deployment, case["id"])
    rows = json.loads((await jp_fetch("cpms/api/cases")).body)
    for _ in range(3):  # the desk's polls while nothing changes
        assert json.loads((await jp_fetch("cpms/api/cases")).body) == rows
    assert _listings(deployment, case["id"]) == before + 1  # listed (and audited) once

    with _store(deployment, token) as api:
        assert api.patch(f"/cases/{case['id']}", json={"title": "Invented: renamed"}).is_success
    rows = {r["id"]: r for r in json.loads((await jp_fetch("cpms/api/cases")).body)}
    assert rows[case["id"]]["title"] == "Invented: renamed"
    assert _listings(deployment, case["id"]) == before + 2


async def test_other_hospitals_case_is_refused_with_the_stores_reasons(
    jp_fetch, as_user, deployment, tokens, jp_root_dir
):
    theirs = _case(deployment, tokens["clin-a"])
    as_user("clin-b")
    status, body = await _refused(jp_fetch, "cpms/api/cases", theirs["id"])
    assert status == 403
    assert body["error"] == "forbidden" and body["reasons"], body
    assert all("Invented" not in r for r in body["reasons"])  # no case data in a refusal
    listed = json.loads((await jp_fetch("cpms/api/cases")).body)
    assert theirs["id"] not in {c["id"] for c in listed}

    status, body = await _refused(
        jp_fetch, "cpms/api/case-notebook", theirs["id"], method="POST", body=b""
    )
    assert status == 403 and body["reasons"]
    assert not (jp_root_dir / "cases").exists()  # no notebook for a case one may not read


async def test_unknown_case_is_the_stores_404(jp_fetch, as_user):
    as_user("clin-a")
    status, body = await _refused(jp_fetch, "cpms/api/cases", str(uuid.uuid4()))
    assert status == 404 and body["status"] == 404 and body["reasons"]


async def test_notifications_come_from_the_store_inbox(jp_fetch, as_user):
    as_user("sci-d")  # nobody invites a data scientist: an empty inbox, but a real one
    resp = await jp_fetch("cpms/api/notifications")
    assert json.loads(resp.body) == {"available": True, "notifications": []}


async def test_a_panels_request_and_signed_outcome_reach_the_desk(
    jp_fetch, as_user, deployment, tokens, jp_root_dir
):
    token = as_user("clin-a")
    reviewed = panel_on_case(deployment, token, "Invented: desk notifications")
    case_id = reviewed.case_id

    async def mine() -> list[dict]:
        body = json.loads((await jp_fetch("cpms/api/notifications")).body)
        assert body["available"] is True
        return [n for n in body["notifications"] if n["case_id"] == case_id]

    (asked,) = await mine()
    assert asked["kind"] == "information-request" and asked["store_kind"] == "information-request"
    assert asked["read"] is False
    assert asked["text"] == "The panel asks you for more information"
    assert QUESTION not in json.dumps(asked)  # the question itself stays in the store

    # the case list and the store's own link name the same page of the review app
    rows = {c["id"]: c for c in json.loads((await jp_fetch("cpms/api/cases")).body)}
    row = rows[case_id]
    assert row["status"] == "panel-assembled"
    assert row["panel_deadline"] == (date.today() + timedelta(days=14)).isoformat()
    link = urlsplit(asked["link"])
    assert f"{link.path}?{link.query}" == row["review_url"]
    assert link.path == f"/services/{REVIEW_SERVICE}/" and DESK_REVIEW_SERVICE == REVIEW_SERVICE
    assert parse_qs(link.query) == {"case": [case_id]}  # what the review app's home reads

    # the request leads to the case's notebook, where the owner reads and answers it
    resp = await jp_fetch("cpms/api/case-notebook", case_id, method="POST", body=b"")
    nb = nbformat.read(jp_root_dir / json.loads(resp.body)["path"], as_version=4)
    assert any(c.source == REQUESTS_HEADING for c in nb.cells)
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert f"asked by {reviewed.member}: {QUESTION}" in printed
    assert "not answered yet" in printed

    # opened, it is marked read (for its addressee only)
    marked = await jp_fetch("cpms/api/notifications", asked["id"], "read", method="POST", body=b"")
    read = json.loads(marked.body)
    assert read["id"] == asked["id"] and read["read"] is True
    assert (await mine())[0]["read"] is True
    as_user("clin-b")
    status, body = await _refused(
        jp_fetch, "cpms/api/notifications", asked["id"], "read", method="POST", body=b""
    )
    assert status == 404 and body["reasons"]

    # the panel signs: the owner is told, and the outcome PDF comes through the desk
    as_user("clin-a")
    sign_outcome(deployment, reviewed)
    kinds = {n["kind"] for n in await mine()}
    assert kinds == {"information-request", "outcome-signed"}
    pdf = await jp_fetch("cpms/api/cases", case_id, "outcome.pdf")
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.headers["Cache-Control"] == "no-store"
    assert pdf.body.startswith(b"%PDF-")


async def test_outcome_pdf_without_an_outcome_is_a_404(jp_fetch, as_user, deployment):
    token = as_user("clin-a")
    case = _case(deployment, token)
    status, body = await _refused(jp_fetch, "cpms/api/cases", case["id"], "outcome.pdf")
    assert status == 404 and body["status"] == 404


async def test_without_a_store_the_desk_says_what_is_missing(jp_fetch, monkeypatch):
    monkeypatch.delenv("CPMS_STORE_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    status, body = await _refused(jp_fetch, "cpms/api/cases")
    assert status == 503
    assert body["error"] == "store not configured"
    assert "JUPYTERHUB_API_TOKEN" in body["reasons"][0]


async def test_new_case_notebook_starts_from_the_template_connected(jp_fetch, as_user, jp_root_dir):
    as_user("clin-a")
    first = await jp_fetch("cpms/api/new-case-notebook", method="POST", body=b"")
    assert first.code == 201
    assert json.loads(first.body) == {"path": "cases/new-case-1.ipynb", "created": True}
    second = json.loads(
        (await jp_fetch("cpms/api/new-case-notebook", method="POST", body=b"")).body
    )
    assert second["path"] == "cases/new-case-2.ipynb"

    nb = nbformat.read(jp_root_dir / "cases" / "new-case-1.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"  # opens without a kernel dialog
    assert "CaseStoreClient.from_env()" in nb.cells[0].source
    sources = "\n".join(c.source for c in nb.cells)
    assert "CaseForm(client)" in sources and "ConsentWidget" in sources
    # the template's worked examples (they create invented cases) are left out
    assert "create_case(" not in sources
    assert all(c.get("outputs", []) == [] for c in nb.cells)


async def test_case_notebook_is_bound_to_the_case_and_runs(
    jp_fetch, as_user, deployment, jp_root_dir
):
    token = as_user("clin-a")
    case = _case(deployment, token, "Invented: bound notebook")
    resp = await jp_fetch("cpms/api/case-notebook", case["id"], method="POST", body=b"")
    assert resp.code == 201
    path = json.loads(resp.body)["path"]
    assert path == f"cases/case-{case['id']}.ipynb"
    file = jp_root_dir / path
    assert case["title"] not in file.read_text()  # only the id is written down

    # run it as the user's kernel would: the client connects and fetches the case
    nb = nbformat.read(file, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    out = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert "Connected to the case store as clin-a" in out
    assert "Invented: bound notebook: draft, ERN-TEST" in out

    # asked again, the desk opens the same notebook and keeps what the user wrote in it
    file.write_text(file.read_text().replace("## Files", "## Files (my notes)"))
    again = json.loads(
        (await jp_fetch("cpms/api/case-notebook", case["id"], method="POST", body=b"")).body
    )
    assert again == {"path": path, "created": False}
    assert "my notes" in file.read_text()


SLIDE_SAMPLE = Path(
    os.environ.get("CPMS_SLIDE_SAMPLE", REPO.parent / "shared" / "data" / "CMU-1-Small-Region.svs")
)


async def test_case_notebook_lists_the_cases_images_with_a_viewer_each(
    jp_fetch, as_user, deployment, jp_root_dir
):
    if not SLIDE_SAMPLE.exists():
        pytest.skip(f"sample slide not found at {SLIDE_SAMPLE}")
    token = as_user("clin-a")
    case = _case(deployment, token, "Invented: biopsy")
    with _store(deployment, token) as api:
        up = api.post(
            f"/cases/{case['id']}/files",
            content=SLIDE_SAMPLE.read_bytes(),
            headers={"X-CPMS-Filename": "CMU-1-Small-Region.svs", "Content-Type": "image/tiff"},
            timeout=120,
        )
        assert up.status_code == 201, up.text
        slide = api.post(
            f"/cases/{case['id']}/slides", json={"file_id": up.json()["id"]}, timeout=120
        ).json()

    detail = json.loads((await jp_fetch("cpms/api/cases", case["id"])).body)
    assert detail["slides"] == [{"id": slide["id"], "width": 2220, "height": 2967}]
    assert [f["id"] for f in detail["files"]] == [slide["file_id"]]

    resp = await jp_fetch("cpms/api/case-notebook", case["id"], method="POST", body=b"")
    nb = nbformat.read(jp_root_dir / json.loads(resp.body)["path"], as_version=4)
    viewers = [c.source for c in nb.cells if "SlideViewer(client" in c.source]
    assert viewers == [f'SlideViewer(client, CASE_ID, "{slide["id"]}")']
    # every cell runs, the viewer included (it asks the store for a grant as the user)
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
