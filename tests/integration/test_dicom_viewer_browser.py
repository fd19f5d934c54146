"""The DICOM viewer in Chromium: in a real JupyterLab and in a Panel app, the same ESM.

A dedicated clinician imports a synthetic CT series and an ultrasound cine (through the
store API, as a notebook would). Then:

* JupyterLab: they log in through the real hub, land in their JupyterLab and run a
  notebook showing ``DicomViewer(CaseStoreClient.from_env(), case_id)``. The browser
  fetches the series description and the raw frames itself, through the proxy at the same
  origin as JupyterLab.
* Panel: ``panel serve cpms_widgets/apps/dicom_app.py`` runs on a free loopback port as
  that clinician (their token in the process's environment, never in a URL), behind a
  configurable-http-proxy of its own that also routes ``/services/cpms-store`` to the
  deployment's store: the page and the store share one origin, as when the app runs as a
  hub service behind the hub's proxy, so no cross-origin request is needed.

Checked in both: a slice renders (the canvas is not blank), the wheel and the arrow keys
change the slice and the picture, a window/level drag changes the picture without a single
extra request, every frame request carries ``X-CPMS-Grant`` and no URL carries the grant.
In JupyterLab also: CT presets, zoom, a length in mm from Pixel Spacing, the series
drop-down switching to the cine, and the cine playing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from cpms_widgets.client import CaseStoreClient
from tests.data_gen import ct_series, us_cine
from tests.deployment import REPO, free_port
from tests.integration.test_accounts_browser import (
    LAB_TIMEOUT_MS,
    _stop_server,
    _unique,
)
from tests.jupyterlab import (
    canvas_picture,
    open_lab,
    picture_difference,
    run_all,
    scroll_series_viewer,
)

pytestmark = [pytest.mark.deployment, pytest.mark.browser]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

NOTEBOOK = "dicom-viewer.ipynb"
KERNEL_TIMEOUT_MS = 90_000
#: the viewer's frame requests: batches of slices (the first one alone)
FRAME_RE = re.compile(r"/dicom/series/[^/]+/slices/[0-9,-]+$")
GRANT = "x-cpms-grant"
SLICES = 24
SIZE = 256
PIXEL_MM = 0.7  # tests/data_gen.py's Pixel Spacing
US_FRAMES = 12


@pytest.fixture(scope="module")
def imaged(deployment, tmp_path_factory):
    """A clinician and their case with a CT series and an ultrasound cine."""
    folder = tmp_path_factory.mktemp("dicom-browser")
    ct_series(folder / "ct", slices=SLICES, size=SIZE)
    us_cine(folder / "us" / "cine.dcm", frames=US_FRAMES)
    acc = deployment.add_account(_unique("dicomdoc"), ("clinician",), hospital="Hospital A")
    token = deployment.token(acc.name)
    with CaseStoreClient(deployment.api, token) as client:
        case = client.create_case("dicom viewer case", "imaging")
        report = client.import_dicom(case.id, folder)
        held = [i["key"] for i in report["instances"] if i["status"] == "held"]
        if held:  # synthetic images carry no burned-in text: confirm, as a clinician would
            report = client.import_dicom(case.id, folder, confirm_burned_in=held)
        assert report["errors"] == 0, report
        studies = client.list_studies(case.id)
    series = {s["modality"]: s for st in studies for s in st["series"]}
    assert set(series) == {"CT", "US"}, studies
    return acc, token, case.id, series


class Traffic:
    """Frame requests the page made, and every URL it asked for."""

    def __init__(self, page) -> None:
        self.frames: list[dict] = []
        self.urls: list[str] = []
        self.statuses: list[int] = []
        page.on("request", self._request)
        page.on("response", self._response)

    def _request(self, req) -> None:
        self.urls.append(req.url)
        if FRAME_RE.search(req.url):
            self.frames.append({"url": req.url, "grant": req.headers.get(GRANT)})

    def _response(self, resp) -> None:
        if FRAME_RE.search(resp.url):
            self.statuses.append(resp.status)

    def check_grants(self) -> None:
        assert self.frames, f"no frame requests; requests: {self.urls[-20:]}"
        assert all(s == 200 for s in self.statuses), self.statuses
        grants = {f["grant"] for f in self.frames}
        assert None not in grants and "" not in grants, grants
        for grant in grants:
            assert not [u for u in self.urls if grant in u]
        assert not [u for u in self.urls if "grant=" in u.lower()]


def _wait_attr(viewer, name: str, value: str, timeout_s: float = 20) -> None:
    expect(viewer).to_have_attribute(name, value, timeout=timeout_s * 1000)


def _scroll_and_window(page, viewer, traffic: Traffic, tmp_path: Path, tag: str) -> None:
    """What both hosts must do: render, scroll (wheel and keys), window/level by dragging."""
    box = scroll_series_viewer(page, viewer, SLICES, tmp_path, tag)
    canvas = viewer.locator("canvas")

    # arrow keys (after a click on the viewer: it takes the focus)
    canvas.click(position={"x": 5, "y": 5})
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    _wait_attr(viewer, "data-slice", str(SLICES // 2 + 2))
    page.keyboard.press("ArrowUp")
    _wait_attr(viewer, "data-slice", str(SLICES // 2 + 1))
    page.wait_for_timeout(300)
    before = canvas_picture(viewer)

    # window/level by dragging: new pixels, computed in the browser (no request)
    requests_before = len(traffic.frames)
    ww, wc = viewer.get_attribute("data-ww"), viewer.get_attribute("data-wc")
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 160, cy - 120, steps=8)
    page.mouse.up()
    page.wait_for_timeout(300)
    assert (viewer.get_attribute("data-ww"), viewer.get_attribute("data-wc")) != (ww, wc)
    after = canvas_picture(viewer)
    after.save(tmp_path / f"{tag}-03-windowed.png")
    assert picture_difference(before, after) > 2, "window/level did not change the picture"
    assert viewer.get_attribute("data-slice") == str(SLICES // 2 + 1)
    # the viewer fetches the rest of the series in the background: once it is all in, a
    # W/L drag asks for nothing new
    _wait_attr(viewer, "data-cached", str(SLICES), 60)
    page.wait_for_timeout(300)
    settled = len(traffic.frames)
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 100, cy + 60, steps=5)
    page.mouse.up()
    page.wait_for_timeout(300)
    assert len(traffic.frames) == settled >= requests_before


def _notebook(case_id: str) -> dict:
    source = (
        "from cpms_widgets import CaseStoreClient, DicomViewer\n"
        f"viewer = DicomViewer(CaseStoreClient.from_env(), {case_id!r}, height='560px')\n"
        "viewer"
    )
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "dicom-viewer",
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


def _put(page, deployment, name: str, path: str, body: dict) -> None:
    lab = f"{deployment.url}/user/{name}"
    xsrf = next(
        (c["value"] for c in page.context.cookies(lab + "/lab") if c["name"] == "_xsrf"), ""
    )
    resp = page.request.put(
        f"{lab}/{path}",
        data=json.dumps(body),
        headers={"X-XSRFToken": xsrf, "Content-Type": "application/json"},
    )
    assert resp.ok, (path, resp.status, resp.text())


def test_dicom_viewer_in_jupyterlab(deployment, page, imaged, tmp_path):
    acc, _token, case_id, series = imaged
    name = acc.name
    traffic = Traffic(page)
    try:
        open_lab(page, deployment, acc)
        _put(
            page,
            deployment,
            name,
            f"api/contents/{NOTEBOOK}",
            {"type": "notebook", "format": "json", "content": _notebook(case_id)},
        )
        page.goto(f"{deployment.url}/user/{name}/lab/tree/{NOTEBOOK}")
        expect(page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")).to_be_visible(
            timeout=LAB_TIMEOUT_MS
        )
        run_all(
            page,
            deployment,
            name,
            NOTEBOOK,
            page.locator(".cpms-dicom-viewer, .jp-OutputArea-output[data-mime-type*='error']"),
            KERNEL_TIMEOUT_MS,
        )
        expect(page.locator(".jp-OutputArea-output[data-mime-type*='error']")).to_have_count(0)
        viewer = page.locator(".cpms-dicom-viewer")
        expect(viewer).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
        # the CT opens first if it is the first series; pick it explicitly either way
        select = viewer.locator("select.cpms-dicom-series")
        if viewer.get_attribute("data-modality") != "CT":
            select.select_option(series["CT"]["series_uid"])
            _wait_attr(viewer, "data-modality", "CT", 60)
        _scroll_and_window(page, viewer, traffic, tmp_path, "lab")

        # CT presets set the window in Hounsfield units
        viewer.locator(".cpms-dicom-preset[data-preset='lung']").click()
        _wait_attr(viewer, "data-ww", "1500")
        _wait_attr(viewer, "data-wc", "-600")

        # zoom in with the button, then measure a horizontal line of 200 screen pixels
        zoom = float(viewer.get_attribute("data-zoom"))
        viewer.locator(".cpms-dicom-zoom-in").click()
        page.wait_for_timeout(200)
        assert float(viewer.get_attribute("data-zoom")) > zoom
        viewer.locator(".cpms-dicom-reset").click()
        page.wait_for_timeout(200)
        viewer.locator(".cpms-dicom-mode-measure").click()
        box = viewer.locator("canvas").bounding_box()
        x0, y = box["x"] + box["width"] / 2 - 100, box["y"] + box["height"] / 2
        page.mouse.move(x0, y)
        page.mouse.down()
        page.mouse.move(x0 + 200, y, steps=5)
        page.mouse.up()
        page.wait_for_timeout(300)
        assert viewer.get_attribute("data-measure-unit") == "mm"
        # the image is fitted to the canvas: 200 screen px = 200 * SIZE / shown size image px
        shown = min(box["width"], box["height"])
        expected = 200 * SIZE / shown * PIXEL_MM
        measured = float(viewer.get_attribute("data-measure"))
        assert abs(measured - expected) < 0.05 * expected, (measured, expected)
        viewer.screenshot(path=str(tmp_path / "lab-04-measured.png"))

        # the series drop-down: the kernel takes a grant for the cine, which then plays
        select.select_option(series["US"]["series_uid"])
        _wait_attr(viewer, "data-modality", "US", 60)
        _wait_attr(viewer, "data-slices", str(US_FRAMES), 60)
        expect(viewer).to_have_attribute("data-first-frame-ms", re.compile(r"\d"), timeout=60_000)
        viewer.locator(".cpms-dicom-play").click()
        _wait_attr(viewer, "data-playing", "true")
        seen = set()
        deadline = time.monotonic() + 10
        while len(seen) < 4 and time.monotonic() < deadline:
            seen.add(viewer.get_attribute("data-slice"))
            page.wait_for_timeout(50)
        assert len(seen) >= 4, f"the cine did not play: frames seen {seen}"
        viewer.locator(".cpms-dicom-play").click()
        _wait_attr(viewer, "data-playing", "false")
        viewer.screenshot(path=str(tmp_path / "lab-05-cine.png"))
        traffic.check_grants()
        assert len({f["grant"] for f in traffic.frames}) >= 2  # one per series
        assert viewer.get_attribute("data-error") is None
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        _stop_server(deployment, name)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


@pytest.fixture
def panel_origin(deployment, imaged, tmp_path):
    """``panel serve`` of the DICOM app as the clinician, and one origin for it and the
    store: a configurable-http-proxy routing ``/services/cpms-store`` to the store and
    everything else to Panel. Both processes are stopped by PID."""
    _acc, token, _case_id, _series = imaged
    panel_port, proxy_port, api_port = free_port(), free_port(), free_port()
    origin = f"127.0.0.1:{proxy_port}"
    bin_dir = Path(sys.executable).parent
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CPMS_", "JUPYTERHUB_"))},
        "CPMS_STORE_URL": deployment.direct_api,
        "CPMS_TOKEN": token,
    }
    panel_log = (tmp_path / "panel.log").open("wb")
    panel = subprocess.Popen(
        [
            str(bin_dir / "panel"),
            "serve",
            str(REPO / "cpms_widgets" / "apps" / "dicom_app.py"),
            "--address",
            "127.0.0.1",
            "--port",
            str(panel_port),
            "--allow-websocket-origin",
            origin,
        ],
        cwd=str(REPO),
        env=env,
        stdout=panel_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proxy_token = secrets.token_hex(16)
    proxy_log = (tmp_path / "proxy.log").open("wb")
    proxy = subprocess.Popen(
        [
            str(REPO / "node_modules" / ".bin" / "configurable-http-proxy"),
            "--ip",
            "127.0.0.1",
            "--port",
            str(proxy_port),
            "--api-ip",
            "127.0.0.1",
            "--api-port",
            str(api_port),
            "--default-target",
            f"http://127.0.0.1:{panel_port}",
        ],
        env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": proxy_token},
        stdout=proxy_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{api_port}/api/routes", 30)
        store_port = deployment.env["CPMS_STORE_PORT"]
        added = httpx.post(
            f"http://127.0.0.1:{api_port}/api/routes/services/cpms-store",
            json={"target": f"http://127.0.0.1:{store_port}"},
            headers={"Authorization": f"token {proxy_token}"},
            trust_env=False,
        )
        assert added.status_code == 201, added.text
        _wait_http(f"http://{origin}/dicom_app", 90)
        yield f"http://{origin}"
    finally:
        _stop(proxy)
        _stop(panel)
        panel_log.close()
        proxy_log.close()


def test_dicom_viewer_in_panel(page, imaged, panel_origin, tmp_path):
    _acc, _token, case_id, series = imaged
    traffic = Traffic(page)
    try:
        ct = series["CT"]["series_uid"]
        page.goto(f"{panel_origin}/dicom_app?case={case_id}&series={ct}")
        viewer = page.locator(".cpms-dicom-viewer")
        expect(viewer).to_be_visible(timeout=60_000)
        _wait_attr(viewer, "data-modality", "CT", 60)
        _scroll_and_window(page, viewer, traffic, tmp_path, "panel")
        traffic.check_grants()
        # the page and the store are one origin: no request went anywhere else
        hosts = {urlsplit(u).netloc for u in traffic.urls if u.startswith(("http", "ws"))}
        assert hosts == {urlsplit(panel_origin).netloc}, hosts
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
