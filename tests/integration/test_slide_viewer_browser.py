"""The whole-slide viewer in a real JupyterLab: OpenSeadragon fetching tiles with a grant.

A dedicated clinician uploads the sample Aperio slide and imports it (through the store
API, as a notebook would), logs in through the real hub, lands in their JupyterLab and
runs a notebook that shows ``SlideViewer(CaseStoreClient.from_env(), case_id, slide_id)``.
The browser then fetches the Deep Zoom descriptor and the tiles itself, through the proxy
at the same origin as JupyterLab. Checked: the viewer appears, tiles come back 200, every
tile request carries ``X-CPMS-Grant`` and no URL carries the grant, zooming in asks for a
higher Deep Zoom level, and the viewer's screenshot is not blank.

Then the shared annotations: the case is submitted with panel-p on its panel; the owner
draws a point with a comment in JupyterLab (saved through the kernel, as the owner), which
panel-p reads from the store; panel-p annotates through the API, and the owner's open
viewer shows it within a poll, without re-running anything. Rotation turns the view.
"""

from __future__ import annotations

import io
import json
import re
import time

import pytest

from cpms_widgets.client import CaseStoreClient
from tests.integration.panel_slide import panel_case_with_slide
from tests.integration.slide_browser import draw_point
from tests.integration.test_accounts_browser import (
    LAB_TIMEOUT_MS,
    _stop_server,
    _unique,
)
from tests.integration.test_slides_http import SAMPLE
from tests.jupyterlab import open_lab, run_all

pytestmark = [pytest.mark.deployment, pytest.mark.browser]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

NOTEBOOK = "slide-viewer.ipynb"
KERNEL_TIMEOUT_MS = 90_000
TILE_RE = re.compile(r"/slides/(?P<slide>[^/]+)/tiles/(?P<level>\d+)/(?P<col>\d+)_(?P<row>\d+)\.")
GRANT = "x-cpms-grant"
#: the notebook renews the grant this long after showing the viewer
REFRESH_AFTER_S = 5
#: the notebook's viewer fetches other reviewers' annotations this often
POLL_S = 2


def _xsrf(page, url: str) -> str:
    return next((c["value"] for c in page.context.cookies(url) if c["name"] == "_xsrf"), "")


def _put(page, deployment, name: str, path: str, body: dict) -> None:
    """PUT to the user's server REST API (settings, contents) with the page's session."""
    lab = f"{deployment.url}/user/{name}"
    resp = page.request.put(
        f"{lab}/{path}",
        data=json.dumps(body),
        headers={"X-XSRFToken": _xsrf(page, lab + "/lab"), "Content-Type": "application/json"},
    )
    assert resp.ok, (path, resp.status, resp.text())


def _notebook(case_id: str, slide_id: str) -> dict:
    source = (
        "import threading\n"
        "from cpms_widgets import CaseStoreClient\n"
        "from cpms_widgets.viewers import SlideViewer\n"
        f"viewer = SlideViewer(CaseStoreClient.from_env(), {case_id!r}, {slide_id!r},"
        f" poll_seconds={POLL_S})\n"
        # a renewal from a thread, as the viewer's own timer does before expiry
        f"threading.Timer({REFRESH_AFTER_S}, viewer.refresh).start()\n"
        "viewer"
    )
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "slide-viewer",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
        ],
        "metadata": {
            "kernelspec": {
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
                "name": "python3",
            },
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _colour_spread(png: bytes) -> float:
    from PIL import Image, ImageStat

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return max(ImageStat.Stat(img).stddev)


def test_clinician_views_a_slide_in_jupyterlab(deployment, page, tmp_path):
    if not SAMPLE.exists():
        pytest.skip(f"sample slide not found at {SAMPLE}")
    acc = deployment.add_account(_unique("slidedoc"), ("clinician",), hospital="Hospital A")
    name = acc.name
    # a submitted case with consent and a slide, panel-p on its panel
    case_id, slide_id = panel_case_with_slide(deployment, deployment.token(name))

    tiles: list[dict] = []
    responses: list[tuple[str, int]] = []
    urls: list[str] = []

    def on_request(req) -> None:
        urls.append(req.url)
        m = TILE_RE.search(req.url)
        if m:
            tiles.append(
                {"url": req.url, "level": int(m["level"]), "grant": req.headers.get(GRANT)}
            )

    def on_response(resp) -> None:
        if TILE_RE.search(resp.url):
            responses.append((resp.url, resp.status))

    page.on("request", on_request)
    page.on("response", on_response)
    try:
        open_lab(page, deployment, acc)
        _put(
            page,
            deployment,
            name,
            f"api/contents/{NOTEBOOK}",
            {"type": "notebook", "format": "json", "content": _notebook(case_id, slide_id)},
        )

        page.goto(f"{deployment.url}/user/{name}/lab/tree/{NOTEBOOK}")
        notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
        expect(notebook).to_be_visible(timeout=LAB_TIMEOUT_MS)
        run_all(
            page,
            deployment,
            name,
            NOTEBOOK,
            page.locator(".cpms-slide-viewer, .jp-OutputArea-output[data-mime-type*='error']"),
            KERNEL_TIMEOUT_MS,
        )
        expect(page.locator(".jp-OutputArea-output[data-mime-type*='error']")).to_have_count(0)
        viewer = page.locator(".cpms-slide-viewer")
        expect(viewer).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
        expect(viewer.locator(".openseadragon-container").first).to_be_visible(
            timeout=KERNEL_TIMEOUT_MS
        )
        expect(viewer).to_have_attribute("data-level", re.compile(r"\d+"))

        # tiles arrive, with the grant in the header
        deadline = time.monotonic() + 60
        while not any(s == 200 for _, s in responses) and time.monotonic() < deadline:
            page.wait_for_timeout(250)
        page.wait_for_timeout(1500)  # let the first view settle
        assert tiles, f"no tile requests; requests: {urls[-20:]}"
        assert any(s == 200 for _, s in responses), responses[:10]
        assert all(s == 200 for _, s in responses), [r for r in responses if r[1] != 200][:10]
        assert {t["url"].split("/slides/")[1].split("/")[0] for t in tiles} == {slide_id}
        start_level = max(t["level"] for t in tiles)
        first_grant = tiles[0]["grant"]
        # past the notebook's grant renewal: the tiles requested from now on use the new one
        page.wait_for_timeout((REFRESH_AFTER_S + 4) * 1000)
        seen = len(tiles)
        viewer.screenshot(path=str(tmp_path / "01-slide.png"))

        # zoom in: the mouse wheel over the viewer, then wait for a deeper level
        box = viewer.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            page.mouse.wheel(0, -400)
            page.wait_for_timeout(700)
            if max(t["level"] for t in tiles) > start_level:
                break
        deeper = max(t["level"] for t in tiles)
        assert deeper > start_level, (start_level, sorted({t["level"] for t in tiles}))
        page.wait_for_timeout(2000)
        assert int(viewer.get_attribute("data-level")) > 0
        assert all(s == 200 for _, s in responses), [r for r in responses if r[1] != 200][:10]

        # after the renewal, new tiles carry the new grant (change:grant -> setAjaxHeaders)
        later = {t["grant"] for t in tiles[seen:]}
        assert later and first_grant not in later, "tiles kept using the first grant"

        # every tile request carried the grant in the header, and no URL carried it
        grants = {t["grant"] for t in tiles}
        assert None not in grants and "" not in grants and len(grants) >= 2, len(grants)
        for grant in grants:
            leaked = [u for u in urls if grant in u]
            assert not leaked, leaked[:3]
        assert not [u for u in urls if "grant=" in u.lower()]

        # the picture is not blank
        png = viewer.screenshot(path=str(tmp_path / "02-zoomed.png"))
        spread = _colour_spread(png)
        assert spread > 10, f"the viewer looks blank (colour stddev {spread:.1f})"

        # the owner draws a point with a comment; it is saved as the owner, through the kernel
        draw_point(page, viewer, "drawn in JupyterLab", at=(0.45, 0.45))
        mine = page.locator(".cpms-annotation-item", has_text="drawn in JupyterLab")
        expect(mine).to_be_visible()
        expect(mine.locator(".cpms-annotation-delete")).to_have_count(1)
        # typing the comment ("a", "d d", ...) ran no notebook shortcut: still one cell
        expect(page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell")).to_have_count(1)
        with CaseStoreClient(deployment.api, deployment.token("panel-p")) as panel:
            seen = panel.slide_annotations(case_id, slide_id)
            assert [(a.author, a.kind.value, a.comment) for a in seen] == [
                (name, "point", "drawn in JupyterLab")
            ]
            # a panel member's annotation reaches the open viewer without re-running it
            panel.annotate_slide(
                case_id, slide_id, "polygon", [(100, 100), (900, 150), (500, 800)], "see here"
            )
        theirs = page.locator(".cpms-annotation-item", has_text="see here")
        expect(theirs).to_be_visible(timeout=(POLL_S + 15) * 1000)
        expect(theirs.locator(".cpms-annotation-author")).to_have_text("panel-p")
        expect(theirs.locator(".cpms-annotation-delete")).to_have_count(0)
        expect(viewer.locator("polygon.cpms-annotation[data-author='panel-p']")).to_have_count(1)

        # rotation: the view turns by 90 degrees, the annotations with it
        viewer.locator("[title='Rotate right']").first.click()
        expect(viewer).to_have_attribute("data-rotation", "90", timeout=10_000)
        viewer.screenshot(path=str(tmp_path / "03-annotated-rotated.png"))
        print(f"tiles: {len(tiles)}, levels {start_level} -> {deeper}; screenshots in {tmp_path}")
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        _stop_server(deployment, name)
