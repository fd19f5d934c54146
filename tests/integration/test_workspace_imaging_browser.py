"""The review workspace's images in Chromium, through the real hub: DICOM and slides.

A panel member logs in to ``cpms-review`` through the hub (password + TOTP) and opens
the workspace of a case with a whole-slide image and a small synthetic CT series:

* nothing of the viewers is fetched on page load (no grant, no frame);
* the Images tab lists the CT series; opening it runs the notebook's DICOM viewer ESM
  in the page: a slice renders (the canvas is not blank), the wheel changes the slice
  and the picture, every frame request carries the grant in ``X-CPMS-Grant`` and no URL
  carries it;
* the discussion lists the member's slide annotation; "Show on the slide" brings the
  Images tab back with the slide viewer moved to it.
"""

from __future__ import annotations

import re

import pytest

from cpms_widgets.client import CaseStoreClient
from tests.integration.review_imaging import CT_SLICES, imaged_review_case
from tests.jupyterlab import scroll_series_viewer

pytestmark = [pytest.mark.deployment, pytest.mark.browser]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

#: the viewer fetches its slices in batches (one request per batch, not per frame)
FRAME_RE = re.compile(r"/dicom/series/[^/]+/slices/[0-9,-]+$")
GRANT_RE = re.compile(r"/(dicom/series|slides)/[^/]+/grant$")


def test_panel_member_opens_a_ct_series_and_an_annotation(deployment, tokens, page, tmp_path):
    imaged = imaged_review_case(deployment, tokens["clin-a"], tmp_path / "data")
    with CaseStoreClient(deployment.api, tokens["panel-p"]) as client:
        note = client.annotate_slide(
            imaged.case_id, imaged.slide_id, "point", [(1100, 1400)], "Look at this gland"
        )

    urls: list[str] = []
    frames: list[tuple[str, str | None]] = []
    statuses: list[int] = []
    page.on("request", lambda r: urls.append(r.url))
    page.on(
        "request",
        lambda r: (
            frames.append((r.url, r.headers.get("x-cpms-grant")))
            if FRAME_RE.search(r.url)
            else None
        ),
    )
    page.on("response", lambda r: statuses.append(r.status) if FRAME_RE.search(r.url) else None)
    acc = deployment.accounts["panel-p"]
    try:
        page.goto(f"{deployment.review_url}?case={imaged.case_id}")
        page.wait_for_url("**/hub/login**")
        page.fill("#username_input", acc.name)
        page.fill("#password_input", acc.password)
        page.fill("#otp_input", acc.code())
        page.click("#login_submit")
        page.wait_for_url(f"**/services/cpms-review/?case={imaged.case_id}")
        expect(page.get_by_text("Imaged case under review").first).to_be_visible()
        page.wait_for_timeout(1500)
        # on load: the summary only; no viewer, no frame
        assert page.locator(".cpms-dicom-viewer").count() == 0
        assert page.locator(".cpms-slide-viewer").count() == 0
        assert not frames

        page.get_by_text("Images", exact=True).click()
        expect(page.locator(".cpms-slide-viewer")).to_be_visible(timeout=60_000)
        assert page.locator(".cpms-dicom-viewer").count() == 0  # waits for a series
        page.get_by_role("button", name="Open CT").click()
        viewer = page.locator(".cpms-dicom-viewer")
        expect(viewer).to_be_visible(timeout=60_000)
        scroll_series_viewer(page, viewer, CT_SLICES, tmp_path, "ct")

        assert frames and all(s == 200 for s in statuses), statuses
        grants = {g for _u, g in frames}
        assert None not in grants and "" not in grants
        assert not [u for u in urls for g in grants if g in u]
        outside = [u for u in urls if not u.startswith((deployment.url, "blob:", "data:"))]
        assert not outside, outside[:5]

        # the annotation, from the discussion back to the slide
        page.get_by_text("Discussion", exact=True).click()
        expect(page.get_by_text("Look at this gland")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("point on slide 1").first).to_be_visible()
        page.get_by_role("button", name="Show on the slide").first.click()
        slide = page.locator(".cpms-slide-viewer")
        expect(slide).to_be_visible(timeout=30_000)
        expect(slide).to_have_attribute("data-focused", note.id, timeout=30_000)
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
