"""The notebook's whole-slide viewer inside Panel: the same anywidget ESM, unchanged.

:class:`SlidePane` is a :class:`panel.custom.AnyWidgetComponent` that runs the
esbuild bundle of ``js/slide_viewer.js`` (the one :class:`~cpms_widgets.viewers.SlideViewer`
runs in JupyterLab) with the same synced traits: the Deep Zoom descriptor URL,
the tile URL prefix, the short-lived grant and the microns per pixel. The
browser fetches tiles from the store through the proxy with the grant in the
``X-CPMS-Grant`` header (never in a URL), exactly as in a notebook; the app
only asks the store for the grant, as the signed-in user, and renews it before
it expires (a periodic callback of the session). ``pn.pane.IPyWidget`` is not
used: it loads its runtime from public CDNs.
"""

from __future__ import annotations

from datetime import UTC, datetime

import panel as pn
import param

from ..client import CaseStoreClient
from ..viewers.slide_viewer import BUNDLE, RENEW_BEFORE, _browser_url, _bundle

__all__ = ["SlidePane"]


class SlidePane(pn.custom.AnyWidgetComponent):
    """One slide of one case, viewed as the client's user."""

    # Panel reads the ESM of the class (a path is read when a page is rendered, not
    # at import time); a per-instance value would be ignored
    _esm = BUNDLE

    dzi_url = param.String(default="")
    tile_base = param.String(default="")
    grant = param.String(default="")
    mpp = param.Number(default=None, allow_None=True)
    # no ``height`` trait: Panel's own (an integer layout height) answers the ESM's
    # model.get("height"); left unset, the ESM gives the viewer its default 600 px

    def __init__(
        self,
        client: CaseStoreClient,
        case_id: str,
        slide_id: str,
        *,
        store_prefix: str = "/services/cpms-store/api/v1",
        **params,
    ) -> None:
        _bundle()  # a clear error now if `make setup` has not built the viewers
        props = client.slide_properties(case_id, slide_id)
        params.setdefault("min_height", 600)
        params.setdefault("sizing_mode", "stretch_width")
        super().__init__(mpp=props.get("mpp"), **params)
        self._client = client
        self.case_id = case_id
        self.slide_id = slide_id
        self.store_prefix = store_prefix
        self.expires_at = ""
        self.refresh()
        if pn.state.curdoc is not None:
            # renew before expiry while the page is open (stops with the session)
            pn.state.add_periodic_callback(self._renew_if_due, period=15_000)

    def refresh(self) -> None:
        """Take a new grant now."""
        g = self._client.slide_grant(self.case_id, self.slide_id)
        self.param.update(
            dzi_url=_browser_url(self.store_prefix, g["dzi_url"]),
            tile_base=_browser_url(self.store_prefix, g["tiles_url"]).rstrip("/"),
            grant=g["grant"],
        )
        self.expires_at = g["expires_at"]

    def _renew_if_due(self) -> None:
        expires = datetime.fromisoformat(self.expires_at)
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        if (expires - datetime.now(UTC)).total_seconds() < RENEW_BEFORE:
            self.refresh()
