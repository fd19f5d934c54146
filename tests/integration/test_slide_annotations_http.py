"""Shared slide annotations over HTTP, through the real hub, proxy and store service.

clin-a (the owner) and panel-p (on the panel) annotate the same slide and see each
other's annotations; the coordinator of the network reads them but may not write; a data
scientist, a clinician of another hospital and an anonymous caller get nothing. Bad shapes
get a 422 naming the field; deletion is for the author only; every step is audited and no
comment reaches the audit trail.
"""

from __future__ import annotations

import httpx
import pytest

from cpms_hub.domain import CpmsError, PermissionDeniedError, ShapeKind, ValidationError
from cpms_widgets.client import CaseStoreClient
from tests.integration.panel_slide import panel_case_with_slide
from tests.integration.test_slides_http import SAMPLE

pytestmark = pytest.mark.deployment

COMMENT = "atypical nuclei here (Jane Example's slide)"


@pytest.fixture(scope="module")
def ids(deployment, tokens) -> tuple[str, str]:
    if not SAMPLE.exists():
        pytest.skip(f"sample slide not found at {SAMPLE}")
    return panel_case_with_slide(deployment, tokens["clin-a"])


@pytest.fixture(scope="module")
def clients(deployment, tokens):
    made = {n: CaseStoreClient(deployment.api, t) for n, t in tokens.items()}
    yield made
    for c in made.values():
        c.close()


def _url(deployment, case_id: str, slide_id: str) -> str:
    return f"{deployment.api}/cases/{case_id}/slides/{slide_id}/annotations"


def test_owner_and_panel_see_each_others_annotations(clients, ids) -> None:
    case_id, slide_id = ids
    mine = clients["clin-a"].annotate_slide(case_id, slide_id, "point", [(100, 200)], COMMENT)
    theirs = clients["panel-p"].annotate_slide(
        case_id, slide_id, ShapeKind.POLYGON, [(10, 10), (400, 30), (200, 300)], "agree"
    )
    rect = clients["panel-p"].annotate_slide(
        case_id, slide_id, "rectangle", [(800, 900), (300, 400)], "compare with this"
    )
    assert (mine.author, theirs.author) == ("clin-a", "panel-p")
    assert rect.points == ((300, 400), (800, 900))
    for reader in ("clin-a", "panel-p", "coord-n"):
        seen = clients[reader].slide_annotations(case_id, slide_id)
        assert [a.id for a in seen][:3] == [mine.id, theirs.id, rect.id], reader
        assert seen[0].comment == COMMENT
        # the discussion's view: every slide of the case
        assert mine.id in {a.id for a in clients[reader].case_annotations(case_id)}


def test_who_may_write(clients, ids) -> None:
    case_id, slide_id = ids
    with pytest.raises(PermissionDeniedError) as info:
        clients["coord-n"].annotate_slide(case_id, slide_id, "point", [(1, 1)], "x")
    assert "only its clinicians and panel annotate" in info.value.reasons[0]
    for outsider in ("clin-b", "sci-d", "help-h", "coord-x"):
        with pytest.raises(PermissionDeniedError):
            clients[outsider].annotate_slide(case_id, slide_id, "point", [(1, 1)], "x")
        with pytest.raises(PermissionDeniedError):
            clients[outsider].slide_annotations(case_id, slide_id)


def test_only_the_author_deletes(clients, ids) -> None:
    case_id, slide_id = ids
    a = clients["clin-a"].annotate_slide(case_id, slide_id, "point", [(5, 5)], "mine")
    with pytest.raises(PermissionDeniedError) as info:
        clients["panel-p"].delete_annotation(case_id, slide_id, a.id)
    assert "only its author (clin-a)" in info.value.reasons[0]
    clients["clin-a"].delete_annotation(case_id, slide_id, a.id)
    assert a.id not in {x.id for x in clients["panel-p"].slide_annotations(case_id, slide_id)}
    with pytest.raises(CpmsError) as gone:
        clients["clin-a"].delete_annotation(case_id, slide_id, a.id)
    assert gone.value.status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "circle", "points": [[1, 1]], "comment": "x"}, "kind"),
        ({"kind": "point", "points": [[1, 1]], "comment": " "}, "comment"),
        ({"kind": "point", "points": [[99999, 1]], "comment": "x"}, "points"),
        ({"kind": "rectangle", "points": [[1, 1]], "comment": "x"}, "points"),
        ({"kind": "polygon", "points": [[1, 1], [2, "a"], [3, 3]], "comment": "x"}, "points"),
        ({"kind": "point", "points": [[1, 1]]}, "comment"),
        ({"kind": "point", "points": [[1, 1]], "comment": "x", "colour": "red"}, "colour"),
    ],
)
def test_bad_annotations_refused_by_field(deployment, tokens, ids, body, field) -> None:
    case_id, slide_id = ids
    r = httpx.post(
        _url(deployment, case_id, slide_id),
        json=body,
        headers={"Authorization": f"token {tokens['clin-a']}"},
        trust_env=False,
    )
    assert r.status_code == 422, r.text
    out = r.json()
    assert out["status"] == 422 and any(x.startswith(field) for x in out["reasons"]), out


def test_client_checks_before_sending(clients, ids) -> None:
    case_id, slide_id = ids
    with pytest.raises(ValidationError) as info:
        clients["clin-a"].annotate_slide(case_id, slide_id, "polygon", [(1, 1), (2, 2)], "x")
    assert info.value.field == "points"


def test_anonymous_is_401_and_unknown_slide_404(deployment, tokens, ids) -> None:
    case_id, slide_id = ids
    with httpx.Client(trust_env=False) as c:
        assert c.get(_url(deployment, case_id, slide_id)).status_code == 401
        r = c.post(
            _url(deployment, case_id, slide_id),
            json={"kind": "point", "points": [[1, 1]], "comment": "x"},
        )
        assert r.status_code == 401
        r = c.get(
            _url(deployment, case_id, "00000000-0000-4000-8000-000000000000"),
            headers={"Authorization": f"token {tokens['clin-a']}"},
        )
        assert r.status_code == 404 and r.json()["status"] == 404
        r = c.get(
            _url(deployment, case_id, slide_id),
            headers={"Authorization": f"token {tokens['clin-a']}"},
        )
        assert "no-store" in r.headers["cache-control"]


def test_audited_without_the_comment(clients, ids) -> None:
    case_id, _ = ids
    entries = clients["audit-u"].audit(case_id=case_id)
    actions = {(e["actor"], e["action"], e["outcome"]) for e in entries}
    assert ("clin-a", "annotation.add", "allowed") in actions
    assert ("panel-p", "annotation.add", "allowed") in actions
    assert ("coord-n", "annotation.add", "denied") in actions
    assert ("panel-p", "annotation.delete", "denied") in actions
    assert not [e for e in entries if "Jane" in (e.get("detail") or "")]


def test_viewer_requests_as_the_front_end_sends_them(clients, ids) -> None:
    """What the drawing tools send (``annotation_request``), carried out by the kernel."""
    from cpms_widgets.viewers.slide_session import SlideSession

    case_id, slide_id = ids
    session = SlideSession(clients["panel-p"], case_id, slide_id)
    assert session.user_values() == {"user": "panel-p", "can_annotate": True}
    found, status = session.handle(
        {"op": "add", "kind": "point", "points": [[50, 60]], "comment": "from JS", "nonce": "n1"}
    )
    assert status == {"nonce": "n1", "ok": True, "message": "saved point"}
    assert found[-1]["comment"] == "from JS" and found[-1]["author"] == "panel-p"
    owners = [a for a in found if a["author"] == "clin-a"]
    found, status = session.handle({"op": "delete", "id": owners[0]["id"], "nonce": "n2"})
    assert found is None and not status["ok"] and "only its author" in status["message"]
    found, status = session.handle(
        {"op": "add", "kind": "point", "points": [[1e9, 1]], "comment": "x", "nonce": "n3"}
    )
    assert found is None and not status["ok"] and status["message"].startswith("points")
    _, status = session.handle({"op": "explode", "nonce": "n4"})
    assert not status["ok"] and "unknown request" in status["message"]
    renewed: list[dict] = []
    _, status = session.handle({"op": "renew", "nonce": "n5"}, on_grant=renewed.append)
    assert status["ok"] and renewed[0]["dzi_url"].endswith(f"/slides/{slide_id}/dzi")
    assert renewed[0]["dzi_url"].startswith("/services/cpms-store/api/v1/cases/")
    coordinator = SlideSession(clients["coord-n"], case_id, slide_id)
    assert coordinator.user_values() == {"user": "coord-n", "can_annotate": False}


def test_notebook_viewer_syncs_annotations(clients, ids) -> None:
    from cpms_widgets.viewers import SlideViewer

    case_id, slide_id = ids
    viewer = SlideViewer(clients["clin-a"], case_id, slide_id, auto_refresh=False)
    try:
        assert viewer.user == "clin-a" and viewer.can_annotate
        before = len(viewer.annotations)
        viewer.annotation_request = {
            "op": "add",
            "kind": "rectangle",
            "points": [[10, 10], [20, 30]],
            "comment": "drawn",
            "nonce": "k1",
        }
        assert viewer.annotation_status["ok"] and viewer.annotation_status["nonce"] == "k1"
        assert len(viewer.annotations) == before + 1
        clients["panel-p"].annotate_slide(case_id, slide_id, "point", [(3, 4)], "meanwhile")
        viewer.annotation_request = {"op": "refresh", "nonce": "k2"}
        assert viewer.annotations[-1]["comment"] == "meanwhile"
    finally:
        viewer.close()
