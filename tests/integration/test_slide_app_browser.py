"""The slide viewer in a Panel app, in Chromium: tiles, zoom, annotations across users.

The Panel app (``cpms_widgets/apps/slide_app.py``) is started with ``panel serve`` twice
on free loopback ports, once as the case's owner (clin-a) and once as a panel member
(panel-p), each with that user's own token, as a user running Panel in their own server
would; each is put behind the hub's proxy under ``/services/…`` so the page, the hub and
the store share one origin and the browser fetches tiles from the store without any CORS.
Both processes are stopped by PID.

Checked: tiles load with the grant in a header only; zooming asks for a deeper level; a
point drawn by clin-a appears, with its comment, on panel-p's page without reloading, a
rectangle drawn by panel-p appears on clin-a's, a polygon by clin-a too; the point deleted
by its author disappears from both pages; the store holds exactly what was drawn.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from contextlib import contextmanager

import httpx
import pytest

from cpms_widgets.client import CaseStoreClient
from tests.deployment import REPO, VENV_BIN, free_port
from tests.integration.panel_slide import panel_case_with_slide
from tests.integration.slide_browser import (
    TileWatch,
    draw_point,
    draw_polygon,
    draw_rectangle,
    zoom_in,
)
from tests.integration.test_slides_http import SAMPLE

pytestmark = [pytest.mark.deployment, pytest.mark.browser]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

APP = REPO / "cpms_widgets" / "apps" / "slide_app.py"
POLL_SECONDS = 2
START_TIMEOUT_S = 90


@contextmanager
def panel_app(deployment, user: str, token: str, log_dir):  # noqa: ANN001, ANN201
    """``panel serve`` of the slide app as ``user``, behind the proxy; yields its prefix."""
    port = free_port()
    prefix = f"/services/review-{user}-{secrets.token_hex(4)}"
    env = {
        **{k: v for k, v in deployment.env.items() if not k.startswith("CONFIGPROXY")},
        "JUPYTERHUB_API_TOKEN": token,
        "CPMS_STORE_URL": deployment.direct_api,
        "CPMS_SLIDE_POLL_SECONDS": str(POLL_SECONDS),
    }
    log = (log_dir / f"panel-{user}.log").open("wb")
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "panel"),
            "serve",
            str(APP),
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
            "--prefix",
            prefix,
            "--allow-websocket-origin",
            f"127.0.0.1:{deployment.port}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"panel serve exited: see {log.name}")
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{port}{prefix}/", trust_env=False).status_code
                    < 500
                ):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"panel serve not ready: see {log.name}")
            time.sleep(0.3)
        deployment.add_proxy_route(prefix, f"http://127.0.0.1:{port}")
        yield prefix
    finally:
        deployment.remove_proxy_route(prefix)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _open(browser, url: str):  # noqa: ANN001, ANN202
    ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
    ctx.set_default_timeout(30_000)
    page = ctx.new_page()
    watch = TileWatch(page)
    page.goto(url)
    viewer = page.locator(".cpms-slide-viewer")
    expect(viewer).to_be_visible(timeout=60_000)
    expect(viewer.locator(".openseadragon-container").first).to_be_visible(timeout=60_000)
    return ctx, page, viewer, watch


def test_two_reviewers_in_panel(deployment, tokens, browser, tmp_path) -> None:
    if not SAMPLE.exists():
        pytest.skip(f"sample slide not found at {SAMPLE}")
    case_id, slide_id = panel_case_with_slide(deployment, tokens["clin-a"])
    query = f"slide_app?case={case_id}&slide={slide_id}"
    with (
        panel_app(deployment, "clin-a", tokens["clin-a"], tmp_path) as owner_prefix,
        panel_app(deployment, "panel-p", tokens["panel-p"], tmp_path) as panel_prefix,
    ):
        ctx_a, page_a, viewer_a, watch_a = _open(browser, f"{deployment.url}{owner_prefix}/{query}")
        ctx_p, page_p, viewer_p, watch_p = _open(browser, f"{deployment.url}{panel_prefix}/{query}")
        try:
            # tiles from the store at the page's own origin, the grant only in a header
            for page, watch in ((page_a, watch_a), (page_p, watch_p)):
                watch.wait_for_tiles(page)
                assert all(t["url"].startswith(deployment.url) for t in watch.tiles)
            expect(viewer_a.locator(".cpms-scale-bar")).to_be_visible()
            expect(viewer_a).to_have_attribute("data-level", re.compile(r"\d+"))
            page_a.screenshot(path=str(tmp_path / "01-owner.png"))

            # zooming in asks for a deeper level, served 200
            zoom_in(page_a, viewer_a, watch_a)
            assert int(viewer_a.get_attribute("data-level")) > 0
            watch_a.assert_grant_only_in_headers()
            watch_p.assert_grant_only_in_headers()

            # the owner marks a point; the panel member sees it without reloading
            draw_point(page_a, viewer_a, "look at this nucleus")
            item = page_p.locator(".cpms-annotation-item", has_text="look at this nucleus")
            expect(item).to_be_visible(timeout=(POLL_SECONDS + 15) * 1000)
            expect(item.locator(".cpms-annotation-author")).to_have_text("clin-a")
            expect(
                page_p.locator(".cpms-annotation[data-author='clin-a'][data-kind='point']")
            ).to_have_count(1)
            # not the panel member's to delete; the owner's own item has a delete button
            expect(item.locator(".cpms-annotation-delete")).to_have_count(0)

            # the panel member draws a rectangle; the owner sees it
            draw_rectangle(page_p, viewer_p, "mitotic figures in this field")
            seen = page_a.locator(".cpms-annotation-item", has_text="mitotic figures")
            expect(seen).to_be_visible(timeout=(POLL_SECONDS + 15) * 1000)
            expect(
                page_a.locator(".cpms-annotation[data-author='panel-p'][data-kind='rectangle']")
            ).to_have_count(1)

            # a polygon by the owner; then the owner deletes the point, and it goes for both
            draw_polygon(page_a, viewer_a, "tumour margin")
            expect(
                page_p.locator(".cpms-annotation[data-author='clin-a'][data-kind='polygon']")
            ).to_have_count(1, timeout=(POLL_SECONDS + 15) * 1000)
            page_a.screenshot(path=str(tmp_path / "02-annotated.png"))
            page_a.locator(".cpms-annotation-item", has_text="look at this nucleus").locator(
                ".cpms-annotation-delete"
            ).click()
            expect(page_a.locator(".cpms-annotation-item")).to_have_count(2)
            expect(item).to_have_count(0, timeout=(POLL_SECONDS + 15) * 1000)
        except Exception:
            page_a.screenshot(path=str(tmp_path / "failure-owner.png"), full_page=True)
            page_p.screenshot(path=str(tmp_path / "failure-panel.png"), full_page=True)
            raise
        finally:
            ctx_a.close()
            ctx_p.close()

    with CaseStoreClient(deployment.api, tokens["panel-p"]) as client:
        stored = client.slide_annotations(case_id, slide_id)
    assert [(a.author, a.kind.value, a.comment) for a in stored] == [
        ("panel-p", "rectangle", "mitotic figures in this field"),
        ("clin-a", "polygon", "tumour margin"),
    ]
    for a in stored:
        assert all(0 <= x <= 2220 and 0 <= y <= 2967 for x, y in a.points)
    assert len(stored[1].points) == 3
