"""The DICOM viewer in Panel apps: the notebook viewer's ESM in a ``pn.custom.AnyWidgetComponent``.

:class:`DicomViewerPane` runs ``js/dicom_viewer.js`` (the bundle ``make setup`` builds)
unchanged: the front end only uses synced values (``model.get``/``set``/``on``), which
Panel's AnyWidget shim provides, and fetches the series description and every frame over
HTTP itself, with the grant in the ``X-CPMS-Grant`` header. Panel has no binary widget
messages, so nothing else would work in both hosts.

:class:`DicomApp` is the part a review app embeds: given the store client of the person
using the app (:func:`cpms_widgets.apps.session.session_client` in the review service) and
a case, it lists the case's series, takes a grant for the one on show and renews it, and
switches series when the viewer's drop-down asks. The browser reaches the store at
``store_prefix``; the default, ``/services/cpms-store/api/v1``, is right wherever the app
is served behind the hub's proxy (as the ``cpms-review`` service is), at the same origin
as the store, so no cross-origin request is ever made.

Served on its own (``panel serve cpms_widgets/apps/dicom_app.py``), it reads the case and
series from the page's query (``?case=...&series=...``: identifiers, not patient data),
the store URL from ``CPMS_STORE_URL`` and the user's token from Panel's OAuth login
(``pn.state.access_token``) or, outside the hub, from ``CPMS_TOKEN`` - never from a
service's own token, so the store's policy and audit trail always see the person.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import panel as pn
import param

from cpms_hub.domain import CpmsError

# absolute imports: ``panel serve`` runs this file as a script, outside its package
from cpms_widgets.client import CaseStoreClient
from cpms_widgets.viewers.dicom_viewer import (
    BUNDLE,
    DEFAULT_PREFIX,
    SeriesGrants,
    series_choices,
)

__all__ = ["DicomApp", "DicomViewerPane"]


class DicomViewerPane(pn.custom.AnyWidgetComponent):
    """The viewer's front end; its values are the notebook widget's traits."""

    _esm = BUNDLE

    meta_url = param.String(default="")
    frame_url_template = param.String(default="")
    grant = param.String(default="")
    series = param.List(default=[])
    series_uid = param.String(default="")
    message = param.String(default="")
    autoplay = param.Boolean(default=False)


class DicomApp(pn.viewable.Viewer):
    """The DICOM series of one case, viewed as the client's user."""

    case_id = param.String(default="", doc="the case whose series are shown")
    series_uid = param.String(default="", doc="the series on show")

    def __init__(
        self,
        client: CaseStoreClient,
        case_id: str,
        series_uid: str = "",
        *,
        store_prefix: str = DEFAULT_PREFIX,
        height: int = 640,
        auto_refresh: bool = True,
        **params: Any,
    ) -> None:
        super().__init__(case_id=case_id, **params)
        self._client = client
        # Panel applies changes made from another thread (the grant's renewal timer) on
        # the session's own loop
        self._doc = pn.state.curdoc
        self._session_thread = threading.get_ident()
        self._grants = SeriesGrants(
            client, case_id, self._publish, store_prefix=store_prefix, auto_refresh=auto_refresh
        )
        choices = series_choices(client.list_studies(case_id))
        if series_uid and series_uid not in {c["series_uid"] for c in choices}:
            raise ValueError(f"series_uid: no such series in case {case_id}")
        self.viewer = DicomViewerPane(series=choices, height=height, sizing_mode="stretch_width")
        self.viewer.param.watch(self._on_series, "series_uid")
        wanted = series_uid or (choices[0]["series_uid"] if choices else "")
        if not wanted:
            self.viewer.message = "This case has no DICOM series yet."
        self.viewer.series_uid = wanted
        if pn.state.curdoc is not None:
            pn.state.on_session_destroyed(lambda _ctx: self.close())

    def _publish(self, fields: dict[str, str]) -> None:
        values = {k: fields[k] for k in ("grant", "frame_url_template", "meta_url")}

        def apply() -> None:
            # meta_url last: the front end opens the series when it changes
            self.viewer.param.update(
                grant=values["grant"], frame_url_template=values["frame_url_template"]
            )
            self.viewer.meta_url = values["meta_url"]

        if self._doc is not None and threading.get_ident() != self._session_thread:
            self._doc.add_next_tick_callback(apply)
        else:
            apply()

    def _on_series(self, event: param.parameterized.Event) -> None:
        uid = event.new
        self.series_uid = uid
        if not uid:
            return
        try:
            self._grants.open(uid)
            self.viewer.message = ""
        except CpmsError as exc:  # shown in the viewer: the reasons carry no patient data
            self.viewer.param.update(
                message="; ".join(exc.reasons) or type(exc).__name__, grant="", meta_url=""
            )

    def close(self) -> None:
        self._grants.close()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.viewer, sizing_mode="stretch_width", css_classes=["cpms-dicom-app"])


def _serve() -> None:
    """``panel serve`` entry: the case and series from the query, the user's own token."""
    args = pn.state.session_args
    case_id = (args.get("case") or [b""])[0].decode()
    series_uid = (args.get("series") or [b""])[0].decode()
    token = pn.state.access_token or os.environ.get("CPMS_TOKEN", "")
    url = os.environ.get("CPMS_STORE_URL", "")
    if not (case_id and token and url):
        pn.pane.Alert(
            "Open this page with ?case=<case id>, logged in (CPMS_STORE_URL must be set).",
            alert_type="warning",
        ).servable()
        return
    DicomApp(CaseStoreClient(url, token), case_id, series_uid).servable(title="DICOM")


if __name__.startswith("bokeh"):
    # the package's own module, so the component class is the one and only
    from cpms_widgets.apps.dicom_app import _serve as serve

    serve()
