"""A whole-slide image viewer for notebooks: OpenSeadragon in an anywidget.

The kernel asks the store for a short-lived viewer grant
(:meth:`CaseStoreClient.slide_grant <cpms_widgets.client.CaseStoreClient.slide_grant>`) and
hands the browser three things: the Deep Zoom descriptor URL, the tile URL prefix and the
grant. The browser fetches the descriptor and every tile itself, from the store at the
*same origin* as JupyterLab (through the proxy, ``store_prefix``), sending the grant in the
``X-CPMS-Grant`` header, never in a URL; images never travel through the kernel or as
base64 JSON. The kernel renews the grant about a minute before it expires, and the
viewer uses the new one for the tiles it requests next.

The viewer also shows and draws the panel's shared annotations (point, rectangle,
polygon, each with a comment). Writes go through the kernel, as this user, never through
the grant: the design and its reasons are in :mod:`.slide_session`, which holds the logic
shared with the Panel version (:mod:`cpms_widgets.apps.slide_app`).

The front end is ``js/slide_viewer.js``, bundled with OpenSeadragon by ``make setup``
into ``static/slide_viewer.js``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..client import CaseStoreClient
from .grant_renewal import GrantRenewal
from .slide_session import DEFAULT_POLL_SECONDS, SlideSession

__all__ = ["BUNDLE", "SlideViewer", "bundle_text"]

#: the esbuild bundle of js/slide_viewer.js (built by ``make setup``)
BUNDLE = Path(__file__).parent / "static" / "slide_viewer.js"


def _bundle() -> Path:
    if not BUNDLE.is_file():
        raise FileNotFoundError(
            f"the slide viewer's front end is not built ({BUNDLE} is missing): "
            "run `make setup` to build the viewers"
        )
    return BUNDLE


def bundle_text() -> str:
    """The built ESM module of the viewer (shared by the notebook and Panel versions)."""
    return _bundle().read_text(encoding="utf-8")


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
    expires_at = traitlets.Unicode("").tag(sync=True)
    #: the slide's shared annotations (JSON of :class:`~cpms_hub.domain.SlideAnnotation`)
    annotations = traitlets.List(traitlets.Dict()).tag(sync=True)
    #: who is looking, and whether the drawing tools are shown
    user = traitlets.Unicode("").tag(sync=True)
    can_annotate = traitlets.Bool(False).tag(sync=True)
    #: set by the front end: add / delete / refresh / renew (see :mod:`.slide_session`)
    annotation_request = traitlets.Dict().tag(sync=True)
    #: the answer to the last request: ``{nonce, ok, message}``
    annotation_status = traitlets.Dict().tag(sync=True)
    #: how often the front end fetches the other reviewers' annotations (0: never)
    poll_seconds = traitlets.Float(DEFAULT_POLL_SECONDS).tag(sync=True)
    #: the id of an annotation to move the view to (``viewer.focus_annotation = ann.id``)
    focus_annotation = traitlets.Unicode("").tag(sync=True)

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
        self._esm = bundle_text()
        self._client = client
        self.case_id = case_id
        self.slide_id = slide_id
        self._session = SlideSession(client, case_id, slide_id, store_prefix=store_prefix)
        self._renewal = GrantRenewal(self.refresh, enabled=auto_refresh)
        props = client.slide_properties(case_id, slide_id)
        super().__init__(height=height, store_prefix=store_prefix, mpp=props.get("mpp"), **kwargs)
        with self.hold_sync():
            for name, value in self._session.user_values().items():
                setattr(self, name, value)
            self.annotations = self._session.annotations()
        self.observe(self._on_request, names="annotation_request")
        self.refresh()

    def __repr__(self) -> str:
        return f"SlideViewer(case_id={self.case_id!r}, slide_id={self.slide_id!r})"

    def refresh(self) -> None:
        """Take a new grant now (and schedule the next renewal)."""
        self._set_grant(self._session.grant_values())

    def _set_grant(self, values: dict[str, str]) -> None:
        with self.hold_sync():
            for name, value in values.items():
                setattr(self, name, value)
        self._renewal.schedule(values["expires_at"])

    def _on_request(self, change: dict[str, Any]) -> None:
        request = change["new"] or {}
        if not request:
            return
        found, status = self._session.handle(request, on_grant=self._set_grant)
        with self.hold_sync():
            if found is not None:
                self.annotations = found
            self.annotation_status = status

    def annotate(self, kind: str, points: list, comment: str) -> None:
        """Add an annotation from Python (as the drawing tools do) and show it."""
        found, status = self._session.handle(
            {"op": "add", "kind": kind, "points": points, "comment": comment, "nonce": "py"}
        )
        if not status["ok"]:
            raise ValueError(status["message"])
        self.annotations = found or []

    def refresh_annotations(self) -> None:
        """Fetch the slide's annotations now (the front end also polls)."""
        self.annotations = self._session.annotations()

    def close(self) -> None:
        self._renewal.close()
        super().close()
