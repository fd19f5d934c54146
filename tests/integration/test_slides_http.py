"""Whole-slide images over HTTP, through the real hub and store service.

clin-a uploads an Aperio SVS as an ordinary file, imports it as a slide (de-identified,
original deleted), asks for a viewer grant and fetches the Deep Zoom descriptor and tiles
with it, as the OpenSeadragon viewer in the browser would. The sample slide is
``CMU-1-Small-Region.svs`` (OpenSlide test data), found through ``CPMS_SLIDE_SAMPLE`` or in
``../shared/data`` next to the repository.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.deployment import REPO

pytestmark = pytest.mark.deployment

SAMPLE = Path(
    os.environ.get("CPMS_SLIDE_SAMPLE", REPO.parent / "shared" / "data" / "CMU-1-Small-Region.svs")
)
GRANT = "X-CPMS-Grant"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def _client() -> httpx.Client:
    return httpx.Client(timeout=60, trust_env=False)


def _error_shape(resp: httpx.Response, status: int) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == status and isinstance(body["reasons"], list)


@pytest.fixture(scope="module")
def sample() -> bytes:
    if not SAMPLE.exists():
        pytest.skip(f"sample slide not found at {SAMPLE}")
    return SAMPLE.read_bytes()


@pytest.fixture(scope="module")
def case_id(deployment, tokens) -> str:
    with _client() as c:
        r = c.post(
            f"{deployment.api}/cases",
            json={"title": "slide case", "clinical_summary": "biopsy"},
            headers=_auth(tokens["clin-a"]),
        )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _import(deployment, token: str, case_id: str, data: bytes) -> dict:
    with _client() as c:
        up = c.post(
            f"{deployment.api}/cases/{case_id}/files",
            content=data,
            headers={
                **_auth(token),
                "X-CPMS-Filename": "CMU-1-Small-Region.svs",
                "Content-Type": "image/tiff",
            },
        )
        assert up.status_code == 201, up.text
        r = c.post(
            f"{deployment.api}/cases/{case_id}/slides",
            json={"file_id": up.json()["id"]},
            headers=_auth(token),
        )
    assert r.status_code == 201, r.text
    slide = r.json()
    assert slide["source_file_id"] == up.json()["id"]
    return slide


@pytest.fixture(scope="module")
def slides(deployment, tokens, case_id, sample) -> list[dict]:
    return [_import(deployment, tokens["clin-a"], case_id, sample) for _ in range(2)]


def _grant(deployment, token: str, case_id: str, slide_id: str) -> httpx.Response:
    with _client() as c:
        return c.post(
            f"{deployment.api}/cases/{case_id}/slides/{slide_id}/grant", headers=_auth(token)
        )


def test_import_reports_and_removes_the_original(deployment, tokens, case_id, slides) -> None:
    slide = slides[0]
    report = slide["report"]
    assert {"label", "macro"} <= set(report["removed_images"])
    assert {"aperio.Filename", "aperio.Date", "aperio.Time", "aperio.User"} <= set(
        report["removed_fields"]
    )
    assert report["kept_images"] == ["thumbnail"]
    assert (slide["width"], slide["height"]) == (2220, 2967)
    with _client() as c:
        files = c.get(f"{deployment.api}/cases/{case_id}/files", headers=_auth(tokens["clin-a"]))
        listed = c.get(f"{deployment.api}/cases/{case_id}/slides", headers=_auth(tokens["clin-a"]))
    ids = {f["id"] for f in files.json()}
    names = {f["name"] for f in files.json()}
    for s in slides:
        assert s["source_file_id"] not in ids  # the identifying original is gone
        assert s["file_id"] in ids and f"{s['id']}.svs" in names
    assert "CMU-1-Small-Region.svs" not in names
    assert [s["id"] for s in listed.json()] == [s["id"] for s in slides]


def test_non_slide_is_refused_and_kept(deployment, tokens, case_id) -> None:
    h = _auth(tokens["clin-a"])
    with _client() as c:
        up = c.post(
            f"{deployment.api}/cases/{case_id}/files",
            content=b"%PDF-1.4\n%%EOF\n",
            headers={**h, "X-CPMS-Filename": "note.pdf", "Content-Type": "application/pdf"},
        )
        r = c.post(
            f"{deployment.api}/cases/{case_id}/slides", json={"file_id": up.json()["id"]}, headers=h
        )
        _error_shape(r, 415)
        files = c.get(f"{deployment.api}/cases/{case_id}/files", headers=h).json()
    assert up.json()["id"] in {f["id"] for f in files}


def test_viewer_flow_with_grant(deployment, tokens, case_id, slides) -> None:
    slide_id = slides[0]["id"]
    g = _grant(deployment, tokens["clin-a"], case_id, slide_id)
    assert g.status_code == 200, g.text
    assert "no-store" in g.headers["cache-control"]
    body = g.json()
    assert body["dzi_url"].endswith(f"/slides/{slide_id}/dzi")
    assert body["tiles_url"].endswith(f"/slides/{slide_id}/tiles/")
    assert body["grant"] not in body["dzi_url"] + body["tiles_url"]  # never in URLs
    headers = {GRANT: body["grant"]}
    with _client() as c:
        dzi = c.get(deployment.url + body["dzi_url"], headers=headers)
        assert dzi.status_code == 200, dzi.text
        assert 'TileSize="240"' in dzi.text and 'Width="2220"' in dzi.text
        # the deepest level passes stored tiles through; lower levels are built
        for level, col, row in ((12, 0, 0), (12, 3, 5), (11, 1, 1), (9, 0, 0), (0, 0, 0)):
            t = c.get(
                f"{deployment.url}{body['tiles_url']}{level}/{col}_{row}.jpeg", headers=headers
            )
            assert t.status_code == 200, t.text
            assert t.headers["content-type"] == "image/jpeg"
            assert t.headers["cache-control"] == "private, max-age=3600"
            assert GRANT.lower() in t.headers["vary"].lower()
            with Image.open(io.BytesIO(t.content)) as im:
                im.load()
                assert im.format == "JPEG" and max(im.size) <= 240
        missing = c.get(f"{deployment.url}{body['tiles_url']}12/99_99.jpeg", headers=headers)
        _error_shape(missing, 404)


def test_one_view_audited_per_grant(deployment, tokens, case_id, slides) -> None:
    slide_id = slides[1]["id"]
    grants = [_grant(deployment, tokens["clin-a"], case_id, slide_id).json() for _ in range(2)]
    with _client() as c:
        for body in grants:
            for col in range(4):
                for row in range(3):
                    t = c.get(
                        f"{deployment.url}{body['tiles_url']}12/{col}_{row}.jpeg",
                        headers={GRANT: body["grant"]},
                    )
                    assert t.status_code == 200, t.text
        audit = c.get(
            f"{deployment.api}/audit",
            params={"case_id": case_id, "limit": 10000},
            headers=_auth(tokens["audit-u"]),
        )
    assert audit.status_code == 200, audit.text
    views = [
        e
        for e in audit.json()
        if e["action"] == "slide.view" and f"slide={slide_id}" in e["detail"]
    ]
    assert len(views) == 2  # one per grant, not one per tile (12 tiles each)
    assert {e["actor"] for e in views} == {"clin-a"}
    assert all(body["grant"] not in e["detail"] for e in views for body in grants)


def test_steady_state_tile_is_the_route_answer(deployment, tokens, case_id, slides) -> None:
    """A grant's first tile is answered by the route (it writes the grant's audit entry);
    the next ones by the stored-tile path in front of the app: the same bytes and headers.
    A grant already seen still reaches only its own slide, and errors keep their shape."""
    first, second = (s["id"] for s in slides)
    body = _grant(deployment, tokens["clin-a"], case_id, first).json()
    headers = {GRANT: body["grant"]}
    url = f"{deployment.url}{body['tiles_url']}12/2_3.jpeg"
    with _client() as c:
        by_route = c.get(url, headers=headers)
        steady = [c.get(url, headers=headers) for _ in range(3)]
        for t in steady:
            assert t.status_code == 200 and t.content == by_route.content
            assert [(k, v) for k, v in t.headers.items() if k != "date"] == [
                (k, v) for k, v in by_route.headers.items() if k != "date"
            ]
        other_slide = f"{deployment.api}/cases/{case_id}/slides/{second}/tiles/12/2_3.jpeg"
        _error_shape(c.get(other_slide, headers=headers), 401)
        _error_shape(
            c.get(f"{deployment.url}{body['tiles_url']}12/2_99.jpeg", headers=headers), 404
        )
        _error_shape(c.get(f"{deployment.url}{body['tiles_url']}99/0_0.jpeg", headers=headers), 404)
        _error_shape(c.get(f"{deployment.url}{body['tiles_url']}12/x_0.jpeg", headers=headers), 422)


def test_tiles_need_the_right_grant(deployment, tokens, case_id, slides) -> None:
    first, second = (s["id"] for s in slides)
    other = _grant(deployment, tokens["clin-a"], case_id, second).json()["grant"]
    url = f"{deployment.api}/cases/{case_id}/slides/{first}"
    with _client() as c:
        _error_shape(c.get(f"{url}/tiles/12/0_0.jpeg"), 401)
        _error_shape(c.get(f"{url}/dzi"), 401)
        # the user's own bearer token is not a grant
        _error_shape(c.get(f"{url}/tiles/12/0_0.jpeg", headers=_auth(tokens["clin-a"])), 401)
        _error_shape(c.get(f"{url}/tiles/12/0_0.jpeg", headers={GRANT: other}), 401)
        _error_shape(c.get(f"{url}/tiles/12/0_0.jpeg", headers={GRANT: other[:-2] + "AA"}), 401)


def test_other_hospital_gets_no_grant(deployment, tokens, case_id, slides) -> None:
    slide_id = slides[0]["id"]
    _error_shape(_grant(deployment, tokens["clin-b"], case_id, slide_id), 403)
    with _client() as c:
        for path in ("properties", "associated"):
            r = c.get(
                f"{deployment.api}/cases/{case_id}/slides/{slide_id}/{path}",
                headers=_auth(tokens["clin-b"]),
            )
            _error_shape(r, 403)
        r = c.get(f"{deployment.api}/cases/{case_id}/slides", headers=_auth(tokens["clin-b"]))
        _error_shape(r, 403)


def test_properties_and_associated(deployment, tokens, case_id, slides) -> None:
    url = f"{deployment.api}/cases/{case_id}/slides/{slides[0]['id']}"
    with _client() as c:
        props = c.get(f"{url}/properties", headers=_auth(tokens["clin-a"]))
        assoc = c.get(f"{url}/associated", headers=_auth(tokens["clin-a"]))
        unauth = c.get(f"{url}/properties")
    assert props.status_code == 200, props.text
    p = props.json()
    assert (p["width"], p["height"]) == (2220, 2967)
    assert p["mpp"] == pytest.approx(0.499) and p["objective_power"] == 20
    assert p["stored_levels"] == [[2220, 2967]] and p["deepzoom_levels"] == 13
    assert p["deidentified"] is True
    assert assoc.status_code == 200 and assoc.json() == ["thumbnail"]
    _error_shape(unauth, 401)


def test_tampered_blob_fails_one_tile_not_the_service(
    deployment, tokens, case_id, sample, slides
) -> None:
    slide = _import(deployment, tokens["clin-a"], case_id, sample)
    blob = deployment.state_dir / "blobs" / slide["file_id"][:2] / slide["file_id"][2:4]
    blob = blob / slide["file_id"]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit pattern in a middle segment
    blob.write_bytes(bytes(data))
    grant = _grant(deployment, tokens["clin-a"], case_id, slide["id"]).json()
    statuses = []
    with _client() as c:
        for col in range(10):
            for row in range(13):
                t = c.get(
                    f"{deployment.url}{grant['tiles_url']}12/{col}_{row}.jpeg",
                    headers={GRANT: grant["grant"]},
                )
                if t.status_code != 200:
                    _error_shape(t, 500)
                statuses.append(t.status_code)
        assert 500 in statuses and 200 in statuses
        assert c.get(f"{deployment.api}/health").status_code == 200
        good = _grant(deployment, tokens["clin-a"], case_id, slides[0]["id"]).json()
        t = c.get(f"{deployment.url}{good['tiles_url']}12/0_0.jpeg", headers={GRANT: good["grant"]})
        assert t.status_code == 200
