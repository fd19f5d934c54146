"""What the slide viewer's browser tests share: watching tiles, zooming, drawing.

Used by the JupyterLab and the Panel tests, which show the same ESM module. Playwright
locators pierce shadow DOM (Panel renders components in one), so the same CSS classes
work in both hosts.
"""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

__all__ = ["TILE_RE", "TileWatch", "draw_point", "draw_polygon", "draw_rectangle", "zoom_in"]

TILE_RE = re.compile(r"/slides/(?P<slide>[^/]+)/tiles/(?P<level>\d+)/(?P<col>\d+)_(?P<row>\d+)\.")
GRANT = "x-cpms-grant"


class TileWatch:
    """Tile requests and responses of a page: levels asked for, grants sent, statuses."""

    def __init__(self, page) -> None:  # noqa: ANN001
        self.tiles: list[dict] = []
        self.responses: list[tuple[str, int]] = []
        self.urls: list[str] = []
        page.on("request", self._request)
        page.on("response", self._response)

    def _request(self, req) -> None:  # noqa: ANN001
        self.urls.append(req.url)
        m = TILE_RE.search(req.url)
        if m:
            self.tiles.append(
                {"url": req.url, "level": int(m["level"]), "grant": req.headers.get(GRANT)}
            )

    def _response(self, resp) -> None:  # noqa: ANN001
        if TILE_RE.search(resp.url):
            self.responses.append((resp.url, resp.status))

    def wait_for_tiles(self, page, timeout: float = 60) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while not any(s == 200 for _, s in self.responses) and time.monotonic() < deadline:
            page.wait_for_timeout(250)
        page.wait_for_timeout(1500)  # let the first view settle
        assert self.tiles, f"no tile requests; requests: {self.urls[-20:]}"
        assert any(s == 200 for _, s in self.responses), self.responses[:10]
        self.assert_all_ok()

    def assert_all_ok(self) -> None:
        bad = [r for r in self.responses if r[1] != 200]
        assert not bad, bad[:10]

    def assert_grant_only_in_headers(self) -> None:
        grants = {t["grant"] for t in self.tiles}
        assert None not in grants and "" not in grants, grants
        for grant in grants:
            assert not [u for u in self.urls if grant in u]
        assert not [u for u in self.urls if "grant=" in u.lower()]

    def deepest(self) -> int:
        return max(t["level"] for t in self.tiles)


def zoom_in(page, viewer, watch: TileWatch) -> tuple[int, int]:  # noqa: ANN001
    """Wheel over the viewer until a deeper Deep Zoom level is requested."""
    start = watch.deepest()
    box = viewer.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(700)
        if watch.deepest() > start:
            break
    deeper = watch.deepest()
    assert deeper > start, (start, sorted({t["level"] for t in watch.tiles}))
    page.wait_for_timeout(1500)
    watch.assert_all_ok()
    return start, deeper


def _save_comment(viewer, comment: str) -> None:  # noqa: ANN001
    box = viewer.locator(".cpms-annotation-comment")
    expect(box).to_be_visible()
    # typed key by key, as a person would: no key may reach the host's shortcuts
    box.locator("textarea.cpms-comment-text").press_sequentially(comment, delay=5)
    box.locator("button.cpms-comment-save").click()
    expect(box).to_be_hidden(timeout=15_000)


def draw_point(page, viewer, comment: str, at: tuple[float, float] = (0.4, 0.4)) -> None:  # noqa: ANN001
    """Choose the point tool, click in the slide, write the comment, save."""
    viewer.locator("button.cpms-tool-point").click()
    box = viewer.locator(".openseadragon-container").first.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * at[0], box["y"] + box["height"] * at[1])
    _save_comment(viewer, comment)


def draw_rectangle(page, viewer, comment: str) -> None:  # noqa: ANN001
    """Choose the rectangle tool, drag a box in the slide, write the comment, save."""
    viewer.locator("button.cpms-tool-rectangle").click()
    box = viewer.locator(".openseadragon-container").first.bounding_box()
    assert box is not None
    x0, y0 = box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.5
    page.mouse.move(x0, y0)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x0 + 12 * step, y0 + 8 * step)
    page.mouse.up()
    _save_comment(viewer, comment)


def draw_polygon(page, viewer, comment: str) -> None:  # noqa: ANN001
    """Choose the polygon tool, click three vertices, finish, write the comment, save."""
    viewer.locator("button.cpms-tool-polygon").click()
    box = viewer.locator(".openseadragon-container").first.bounding_box()
    assert box is not None
    for fx, fy in ((0.3, 0.7), (0.45, 0.62), (0.38, 0.85)):
        page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
        page.wait_for_timeout(400)  # apart, so no two clicks make a double-click
    viewer.locator("button.cpms-tool-finish").click()
    _save_comment(viewer, comment)
