"""A whole-slide image viewer for notebooks: OpenSeadragon in an anywidget.

The kernel asks the store for a short-lived viewer grant
(:meth:`CaseStoreClient.slide_grant <cpms_widgets.client.CaseStoreClient.slide_grant>`) and
hands the browser three things: the Deep Zoom descriptor URL, the tile URL prefix and the
grant. The browser fetches the descriptor and every tile itself, from the store at the
*same origin* as JupyterLab (through the proxy, ``store_prefix``), sending the grant in the
``X-CPMS-Grant`` header, never in a URL; images never travel through the kernel or as
base64 JSON. The kernel renews the grant about a minute before it expires, and the
viewer uses the new one for the tiles it requests next.

The front end is ``js/slide_viewer.js``, bundled with OpenSeadragon by ``make setup``
into ``static/slide_viewer.js``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..client import CaseStoreClient

__all__ = ["BUNDLE", "SlideViewer"]

#: the esbuild bundle of js/slide_viewer.js (built by ``make setup``)
BUNDLE = Path(__file__).parent / "static" / "slide_viewer.js"
#: renew a grant this many seconds before it expires
RENEW_BEFORE = 60.0
#: and never sooner than this after the previous one (a very short grant lifetime)
MIN_RENEW_DELAY = 5.0
_API_MARK = "/cases/"


def _bundle() -> Path:
    if not BUNDLE.is_file():
        raise FileNotFoundError(
            f"the slide viewer's front end is not built ({BUNDLE} is missing): "
            "run `make setup` to build the viewers"
        )
    return BUNDLE


def _browser_url(store_prefix: str, path: str) -> str:
    """``path`` (a store path, e.g. ``/services/cpms-store/api/v1/cases/…/dzi``) below
    ``store_prefix``, the store's API root as the browser reaches it."""
    at = path.find(_API_MARK)
    rel = path[at:] if at >= 0 else "/" + path.lstrip("/")
    return store_prefix.rstrip("/") + rel


class SlideViewer(anywidget.AnyWidget):
    """Show slide ``slide_id`` of case ``case_id`` with OpenSeadragon, as the client's user.

    ``SlideViewer(CaseStoreClient.from_env(), case_id, slide_id)`` in a notebook cell.
    """

    _css = """
    .cpms-slide-viewer .openseadragon-container { background: #fff; }
    """

    dzi_url = traitlets.Unicode("").tag(sync=True)
    tile_base = traitlets.Unicode("").tag(sync=True)
    grant = traitlets.Unicode("").tag(sync=True)
    mpp = traitlets.Float(None, allow_none=True).tag(sync=True)
    height = traitlets.Unicode("600px").tag(sync=True)
    #: the store's API root as the browser reaches it (same origin as JupyterLab)
    store_prefix = traitlets.Unicode("/services/cpms-store/api/v1")
    expires_at = traitlets.Unicode("")

    def __init__(
        self,
        client: CaseStoreClient,
        case_id: str,
        slide_id: str,
        *,
        height: str = "600px",
        store_prefix: str = "/services/cpms-store/api/v1",
        auto_refresh: bool = True,
        **kwargs: Any,
    ) -> None:
        # the bundle's text, set per instance: a class-level Path would be read (and fail,
        # if not built) when this module is imported
        self._esm = _bundle().read_text(encoding="utf-8")
        self._client = client
        self.case_id = case_id
        self.slide_id = slide_id
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._auto_refresh = auto_refresh
        self._closed = False
        props = client.slide_properties(case_id, slide_id)
        super().__init__(height=height, store_prefix=store_prefix, mpp=props.get("mpp"), **kwargs)
        self.refresh()

    def __repr__(self) -> str:
        return f"SlideViewer(case_id={self.case_id!r}, slide_id={self.slide_id!r})"

    def refresh(self) -> None:
        """Take a new grant now (and schedule the next renewal)."""
        g = self._client.slide_grant(self.case_id, self.slide_id)
        with self.hold_sync():
            self.dzi_url = _browser_url(self.store_prefix, g["dzi_url"])
            self.tile_base = _browser_url(self.store_prefix, g["tiles_url"]).rstrip("/")
            self.grant = g["grant"]
            self.expires_at = g["expires_at"]
        self._schedule(g["expires_at"])

    def _schedule(self, expires_at: str) -> None:
        if not self._auto_refresh:
            return
        expires = datetime.fromisoformat(expires_at)
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        left = (expires - datetime.now(UTC)).total_seconds()
        delay = max(MIN_RENEW_DELAY, left - RENEW_BEFORE)
        with self._lock:
            if self._closed:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(delay, self._renew)
            self._timer.daemon = True
            self._timer.start()

    def _renew(self) -> None:
        if self._closed:
            return
        try:
            self.refresh()
        except Exception:  # keep trying: the store may be restarting
            with self._lock:
                if self._closed:
                    return
                self._timer = threading.Timer(MIN_RENEW_DELAY * 6, self._renew)
                self._timer.daemon = True
                self._timer.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        super().close()
