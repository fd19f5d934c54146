"""The review workspace's images, refusals and slide annotations, without a browser.

Built with a test account's :class:`CaseStoreClient` against the session's real
deployment, as the ``cpms-review`` service builds it for the signed-in user:

* the Images tab lists the case's whole-slide images and DICOM series; the viewers are
  built only when the tab is shown (slides) or a series is opened (DICOM), never on load
  (a regression: a freshly imported slide once showed as "No images.");
* a part of the case the store refuses to this person is named, with the store's
  reasons, instead of looking empty; "not there yet" (no panel, no outcome) stays quiet;
* the discussion lists the slide annotations (author, shape, comment, slide, time) and
  can move the slide viewer to one of them.
"""

from __future__ import annotations

import pytest

from cpms_widgets import CaseStoreClient
from tests.integration.review_imaging import CT_SLICES, imaged_review_case

pytestmark = pytest.mark.deployment

pn = pytest.importorskip("panel")


@pytest.fixture(scope="module")
def imaged(deployment, tokens, tmp_path_factory):
    return imaged_review_case(
        deployment, tokens["clin-a"], tmp_path_factory.mktemp("imaged-review")
    )


@pytest.fixture(scope="module")
def clients(deployment, tokens):
    made = {name: CaseStoreClient(deployment.api, tokens[name]) for name in tokens}
    yield made
    for c in made.values():
        c.close()


def test_images_listed_and_viewers_built_on_demand(clients, imaged):
    from cpms_widgets.apps import ReviewWorkspace
    from cpms_widgets.apps.dicom_app import DicomApp
    from cpms_widgets.apps.slide_app import SlideReviewApp

    ws = ReviewWorkspace(clients["panel-p"], case_id=imaged.case_id, user="panel-p")
    assert ws.status.error == ""
    assert [s["id"] for s in ws.slides] == [imaged.slide_id]
    assert [(s["series_uid"], s["modality"]) for s in ws.series] == [(imaged.series_uid, "CT")]
    assert ws.withheld == {}
    # a page load builds no viewer (no grant taken, no ESM sent)
    pn.panel(ws).get_root()
    assert ws._slide_apps == {} and ws.dicom is None

    # the Images tab shown: the slide in the notebook's viewer, with a grant
    view = ws._images_view()
    apps = list(ws._slide_apps.values())
    assert [type(a) for a in apps] == [SlideReviewApp]
    assert [a.session.slide_id for a in apps] == [imaged.slide_id]
    viewer = ws.slide_app(imaged.slide_id).viewer
    assert viewer.grant and viewer.dzi_url.endswith("/dzi")
    assert viewer.dzi_url.startswith(f"/services/cpms-store/api/v1/cases/{imaged.case_id}/")
    assert ws.dicom is None  # the DICOM viewer waits for a series to be chosen
    assert "Open CT" in [b.name for b in view.select(pn.widgets.Button)]

    # a series chosen: the DICOM app, with a grant for it
    assert not ws.open_series("1.2.3.not-a-series")
    assert "series_uid" in ws.status.error and ws.dicom is None
    assert ws.open_series(imaged.series_uid), ws.status.error
    assert isinstance(ws.dicom, DicomApp)
    dv = ws.dicom.viewer
    assert dv.series_uid == imaged.series_uid and dv.grant and dv.meta_url
    assert [s["frames"] for s in dv.series] == [CT_SLICES]
    assert len(ws._dicom_area.objects) == 1  # the app's own layout, in the Images tab
    # opening it again reuses the viewer
    first = ws.dicom
    assert ws.open_series(imaged.series_uid) and ws.dicom is first
    ws.dicom.close()


def test_a_case_without_images_says_so(clients):
    from cpms_widgets.apps import ReviewWorkspace
    from tests.review_cases import submitted_case

    case = submitted_case(clients["clin-a"], title="No images here")
    ws = ReviewWorkspace(clients["clin-a"], case_id=case.id, user="clin-a")
    assert ws.slides == [] and ws.studies == []
    assert ws._images_view().objects[0].object == "No images."


def test_withheld_parts_are_named_with_the_reasons(clients, imaged):
    from cpms_widgets.apps import ReviewWorkspace

    # the owner is not on the panel: the panel's own work is not theirs to read
    ws = ReviewWorkspace(clients["clin-a"], case_id=imaged.case_id, user="clin-a")
    assert ws.case is not None and ws.status.error == ""
    assert {"contributions", "messages", "meetings"} <= set(ws.withheld)
    for part in ("slides", "studies", "consent", "files", "annotations", "requests"):
        assert part not in ws.withheld, (part, ws.withheld)
    # no panel assembled and no outcome drafted: absence, not a refusal
    assert "panel" not in ws.withheld and "outcome" not in ws.withheld
    note = ws.withheld_note("messages")
    assert note is not None and note.startswith("You may not see the discussion: ")
    assert "clin-a" in note and "panel" in note  # the store's reason, not a guess
    assert ws.withheld_note("slides") is None

    # what the page shows in place of the part
    alert = ws._discussion_view()
    assert isinstance(alert, pn.pane.Alert) and alert.object == note
    contributions = ws._contributions_view()
    assert isinstance(contributions, pn.pane.Alert)
    assert contributions.object.startswith("You may not see the contributions: ")
    meetings = ws._meetings_view()
    texts = [o.object for o in meetings.objects if isinstance(o, pn.pane.Alert)]
    assert texts and texts[0].startswith("You may not see the meetings: ")
    assert not [o for o in meetings.objects if getattr(o, "object", "") == "No meetings."]
    # the slides are the owner's to see
    assert ws.slides and ws._images_view().objects[0].object == "### Whole-slide images"

    # a refusal is kept when a part is read again, and cleared when it is allowed again
    ws._reload("messages")
    assert "messages" in ws.withheld
    member = ReviewWorkspace(clients["panel-p"], case_id=imaged.case_id, user="panel-p")
    assert "messages" not in member.withheld
    assert member._discussion_view().object == "No messages yet."


def test_a_404_that_is_not_absence_is_named(clients, imaged):
    from cpms_widgets.apps.workspace import PARTS, ReviewWorkspace

    ws = ReviewWorkspace(clients["panel-p"], case_id=imaged.case_id, user="panel-p", load=False)
    slides = next(p for p in PARTS if p.param == "slides")
    ws.case_id = "00000000-0000-4000-8000-000000000000"  # no such case
    value, why = ws._read_part(slides)
    assert value is None and why  # the store's reason for the 404, shown
    panel = next(p for p in PARTS if p.param == "panel")
    assert ws._read_part(panel) == (None, None)


def test_annotations_listed_in_the_discussion(clients, imaged):
    from cpms_widgets.apps import ReviewWorkspace

    made = clients["panel-p"].annotate_slide(
        imaged.case_id,
        imaged.slide_id,
        "rectangle",
        [(400, 500), (900, 1100)],
        "Dense infiltrate here <b>not bold</b>",
    )
    ws = ReviewWorkspace(clients["panel-p"], case_id=imaged.case_id, user="panel-p")
    rows = ws.annotation_rows()
    row = next(r for r in rows if r["id"] == made.id)
    assert row["author"] == "panel-p" and row["kind"] == "rectangle"
    assert row["comment"] == "Dense infiltrate here <b>not bold</b>"
    assert row["slide"] == "slide 1" and row["slide_id"] == imaged.slide_id
    assert row["at"] == f"{made.created_at:%Y-%m-%d %H:%M}"
    view = ws._annotations_view()
    text = "\n".join(o.object for o in view.select(pn.pane.Markdown))
    assert "Slide annotations" in text and "rectangle on slide 1" in text
    assert "\\<b\\>not bold\\</b\\>" in text  # shown as text, not markup
    assert [b.name for b in view.select(pn.widgets.Button)].count("Show on the slide") == len(rows)
    # the owner sees them too (they may see the slide)
    owner = ReviewWorkspace(clients["clin-a"], case_id=imaged.case_id, user="clin-a")
    assert made.id in {r["id"] for r in owner.annotation_rows()}

    # "Show on the slide": the Images tab, the slide's viewer moved to the annotation
    pn.panel(ws).get_root()
    assert ws.show_annotation(made.id), ws.status.error
    assert ws._tabs.active == 1
    viewer = ws.slide_app(imaged.slide_id).viewer
    assert viewer.focus_annotation == made.id
    assert made.id in {a["id"] for a in viewer.annotations}
    # one drawn in the viewer (its front end asks the app) is listed in the discussion
    viewer.annotation_request = {
        "op": "add",
        "kind": "point",
        "points": [[50, 60]],
        "comment": "second look",
        "nonce": "n1",
    }
    assert viewer.annotation_status["ok"], viewer.annotation_status
    assert "second look" in [r["comment"] for r in ws.annotation_rows()]
    assert not ws.show_annotation("no-such-annotation")
    assert "annotation" in ws.status.error
