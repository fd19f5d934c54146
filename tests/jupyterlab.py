"""Driving a real JupyterLab in Debian's Chromium: launch settings, logging in and
landing in JupyterLab, writing its settings, waiting for a notebook's kernel,
running all its cells, and reading what a viewer's canvas shows (to tell a blank
picture from an image, and one picture from the next), as when a DICOM viewer, in
JupyterLab or in the review workspace, is scrolled through its series.

Before the kernel is connected, "Run All Cells" makes JupyterLab ask for a kernel
and run nothing; these helpers wait for the user server to report the notebook's
kernel idle and for the status bar to show it, and retry if the dialog still
comes up.
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "open_lab",
    "lab_settings",
    "kernel_ready",
    "run_all",
    "canvas_picture",
    "picture_difference",
    "picture_spread",
    "scroll_series_viewer",
]

CHROMIUM = "/usr/bin/chromium"
#: without the background-networking flags Chromium keeps dialling out of a closed network
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def lab_settings(page, deployment, user: str, plugin: str, settings: dict) -> None:  # noqa: ANN001
    """Write one JupyterLab settings plugin of ``user`` through their server's REST API."""
    lab = f"{deployment.url}/user/{user}/lab"
    xsrf = next((c["value"] for c in page.context.cookies(lab) if c["name"] == "_xsrf"), "")
    resp = page.request.put(
        f"{lab}/api/settings/{plugin}",
        data=json.dumps({"raw": json.dumps(settings)}),
        headers={"X-XSRFToken": xsrf, "Content-Type": "application/json"},
    )
    assert resp.ok, (plugin, resp.status, resp.text())


def open_lab(page, deployment, account) -> None:  # noqa: ANN001
    """Log ``account`` in at the hub (password and TOTP) and wait for their JupyterLab.

    Its news and update checks are turned off (they would dial out and pop up).
    """
    # imported here: that module skips itself without Playwright, and conftest imports this one
    from tests.integration.test_accounts_browser import LAB_TIMEOUT_MS, _login, _wait_for_lab

    _login(page, deployment, account.name, account.password, account.code(), next_url=None)
    _wait_for_lab(page, deployment, account.name)
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=LAB_TIMEOUT_MS)
    lab_settings(
        page,
        deployment,
        account.name,
        "@jupyterlab/apputils-extension:notification",
        {"fetchNews": "false", "checkForUpdates": False},
    )


def kernel_ready(page, deployment, user: str, notebook: str, timeout_ms: int) -> None:  # noqa: ANN001
    """Wait until ``notebook``'s kernel is started, connected and idle."""
    deadline = time.monotonic() + timeout_ms / 1000
    sessions_url = f"{deployment.url}/user/{user}/api/sessions"
    while True:
        sessions = page.request.get(sessions_url).json()
        if any(
            s["path"] == notebook and s["kernel"]["execution_state"] == "idle" for s in sessions
        ):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the notebook's kernel did not start: {sessions}")
        page.wait_for_timeout(500)
    # and the page is connected to it (the status bar names the kernel and its state)
    expect(
        page.locator(".jp-StatusBar-Widget", has_text="Python 3 (ipykernel) | Idle")
    ).to_be_visible(timeout=timeout_ms)


def run_all(page, deployment, user: str, notebook: str, done, timeout_ms: int) -> None:  # noqa: ANN001
    """Run > Run All Cells once the kernel is up; ``done`` is a locator that shows it ran."""
    for _ in range(3):
        kernel_ready(page, deployment, user, notebook, timeout_ms)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
        expect(dialog.or_(done).first).to_be_visible(timeout=timeout_ms)
        if not dialog.is_visible():
            return
        # the kernel was not ready after all: take the notebook's own and run again
        dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    pytest.fail("JupyterLab kept asking for a kernel")


# Pillow is imported inside these: only the image tests need it, and conftest imports this module
def canvas_picture(viewer):  # noqa: ANN001, ANN201
    """The grey-scale picture of the ``canvas`` inside the ``viewer`` locator."""
    from PIL import Image

    return Image.open(io.BytesIO(viewer.locator("canvas").screenshot())).convert("L")


def picture_difference(a, b) -> float:  # noqa: ANN001
    """Mean absolute difference of two grey-scale pictures (0: the same)."""
    from PIL import ImageChops, ImageStat

    return ImageStat.Stat(ImageChops.difference(a, b)).mean[0]


def picture_spread(img) -> float:  # noqa: ANN001
    """Standard deviation of a grey-scale picture (a blank one is near 0)."""
    from PIL import ImageStat

    return ImageStat.Stat(img).stddev[0]


def scroll_series_viewer(page, viewer, slices: int, folder: Path, tag: str) -> dict:  # noqa: ANN001
    """The DICOM viewer ``viewer`` shows the first of ``slices`` (not blank); the mouse wheel
    over its canvas takes it to the middle slice, and the picture changes. Both pictures
    are saved in ``folder``; returns the canvas's bounding box."""
    expect(viewer).to_have_attribute("data-first-frame-ms", re.compile(r"\d"), timeout=60_000)
    expect(viewer).to_have_attribute("data-slices", str(slices))
    expect(viewer).to_have_attribute("data-slice", "0", timeout=20_000)
    page.wait_for_timeout(300)
    first = canvas_picture(viewer)
    first.save(folder / f"{tag}-01-first.png")
    spread = picture_spread(first)
    assert spread > 10, f"the first slice looks blank ({spread:.1f})"

    box = viewer.locator("canvas").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(slices // 2):
        page.mouse.wheel(0, 120)
        page.wait_for_timeout(40)
    expect(viewer).to_have_attribute("data-slice", str(slices // 2), timeout=20_000)
    page.wait_for_timeout(300)
    middle = canvas_picture(viewer)
    middle.save(folder / f"{tag}-02-scrolled.png")
    assert picture_difference(first, middle) > 1, "scrolling did not change the picture"
    return box
