"""The whole-slide viewer in a Panel app: the notebook viewer's ESM module, unchanged.

:class:`SlideViewerComponent` wraps the same built front end as
:class:`cpms_widgets.viewers.SlideViewer` (``js/slide_viewer.js``) in
``pn.custom.AnyWidgetComponent``. Everything it needs from the server side travels as
parameters synced with the browser - Panel's AnyWidgetComponent has no ``model.send`` and
no binary buffers - and the logic behind them (grants, annotation writes as this user,
refreshes) is :class:`~cpms_widgets.viewers.slide_session.SlideSession`, shared with the
notebook version. ``pn.pane.IPyWidget`` is not used: it loads anywidget from a CDN.

Tiles go from the store straight to the browser, with the image grant in a header, at the
**same origin** as the app: the app is served behind the hub's proxy (as a hub service,
``/services/<name>/``), and the browser reaches the store at
``/services/cpms-store/api/v1`` on that same origin, so no CORS is opened at all. An app
served anywhere else would need the store's address as its ``store_prefix`` and a CORS
policy on the store for exactly that origin; neither is provided.

:class:`SlideReviewApp` (a ``pn.viewable.Viewer``) is the page: a header with the slide's
size and resolution, and the viewer with its annotation tools and list. Served as a file
(``panel serve cpms_widgets/apps/slide_app.py``), it reads ``?case=…&slide=…`` (random
ids, nothing identifying) and acts as the logged-in user: with Panel's OAuth against the
hub, ``pn.state.access_token``; otherwise the server's own JupyterHub token (a user
running Panel in their own server, through ``CaseStoreClient.from_env()``).
"""

from __future__ import annotations

import os
from typing import Any

import panel as pn
import param

# absolute imports: `panel serve` runs this file as a script, outside its package
from cpms_widgets.client import CaseStoreClient
from cpms_widgets.viewers.slide_session import DEFAULT_POLL_SECONDS, SlideSession
from cpms_widgets.viewers.slide_viewer import BUNDLE, bundle_text

__all__ = ["SlideReviewApp", "SlideViewerComponent", "app_from_request"]

#: height of the slide area, and room below it for the annotation list
VIEWER_HEIGHT = 560
LIST_HEIGHT = 180


class SlideViewerComponent(pn.custom.AnyWidgetComponent):
    """The slide viewer's ESM in Panel; parameters mirror the anywidget's traits."""

    _esm = BUNDLE

    dzi_url = param.String(default="")
    tile_base = param.String(default="")
    grant = param.String(default="")
    expires_at = param.String(default="")
    mpp = param.Number(default=None, allow_None=True)
    viewer_height = param.String(default=f"{VIEWER_HEIGHT}px")
    annotations = param.List(default=[])
    user = param.String(default="")
    can_annotate = param.Boolean(default=False)
    annotation_request = param.Dict(default={})
    annotation_status = param.Dict(default={})
    poll_seconds = param.Number(default=DEFAULT_POLL_SECONDS)
    #: the id of an annotation to move the view to (set by the review workspace)
    focus_annotation = param.String(default="")

    def __init__(self, session: SlideSession, **params: Any) -> None:
        bundle_text()  # fails early, with the fix, if the front end is not built
        self._session = session
        super().__init__(**params)

    @param.depends("annotation_request", watch=True)
    def _on_request(self) -> None:
        if not self.annotation_request:
            return
        found, status = self._session.handle(self.annotation_request, on_grant=self._set_grant)
        updates: dict[str, Any] = {"annotation_status": status}
        if found is not None:
            updates["annotations"] = found
        self.param.update(**updates)

    def _set_grant(self, values: dict[str, str]) -> None:
        self.param.update(**values)


class SlideReviewApp(pn.viewable.Viewer):
    """One slide of a case for review: viewer, shared annotations, scale bar, rotation."""

    def __init__(
        self,
        client: CaseStoreClient,
        case_id: str,
        slide_id: str,
        *,
        store_prefix: str = "/services/cpms-store/api/v1",
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.session = SlideSession(client, case_id, slide_id, store_prefix=store_prefix)
        props = client.slide_properties(case_id, slide_id)
        self.properties = props
        self.viewer = SlideViewerComponent(
            self.session,
            mpp=props.get("mpp"),
            annotations=self.session.annotations(),
            poll_seconds=poll_seconds,
            height=VIEWER_HEIGHT + LIST_HEIGHT,
            sizing_mode="stretch_width",
            **self.session.grant_values(),
            **self.session.user_values(),
        )

    def header(self) -> str:
        p = self.properties
        mpp = f", {p['mpp']:.3f} µm/pixel" if p.get("mpp") else ""
        power = f", scanned at {p['objective_power']}×" if p.get("objective_power") else ""
        return f"### Slide {p['width']} × {p['height']} pixels{mpp}{power}"

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(pn.pane.Markdown(self.header()), self.viewer, sizing_mode="stretch_width")


def _client() -> CaseStoreClient:
    token = pn.state.access_token
    if token:
        url = os.environ.get("CPMS_STORE_URL")
        if not url:
            raise RuntimeError("CPMS_STORE_URL is not set: where is the case store?")
        return CaseStoreClient(url, token)
    return CaseStoreClient.from_env()


def _arg(name: str) -> str:
    values = pn.state.session_args.get(name) or [b""]
    return values[0].decode("ascii", "replace")


def app_from_request() -> pn.viewable.Viewable:
    """The page for ``?case=…&slide=…``, as the logged-in user."""
    case_id, slide_id = _arg("case"), _arg("slide")
    if not case_id or not slide_id:
        return pn.pane.Alert("Open this page with ?case=<case id>&slide=<slide id>.")
    try:
        return SlideReviewApp(_client(), case_id, slide_id, poll_seconds=_poll_seconds())
    except Exception as exc:  # noqa: BLE001 - shown to the user, by kind and reason only
        reasons = "; ".join(getattr(exc, "reasons", ()) or (type(exc).__name__,))
        return pn.pane.Alert(f"The slide cannot be shown: {reasons}", alert_type="danger")


def _poll_seconds() -> float:
    try:
        return float(os.environ.get("CPMS_SLIDE_POLL_SECONDS", DEFAULT_POLL_SECONDS))
    except ValueError:
        return DEFAULT_POLL_SECONDS


if __name__.startswith("bokeh_app"):
    pn.extension()
    app_from_request().servable(title="CPMS slide review")
