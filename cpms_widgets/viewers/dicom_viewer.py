"""A DICOM series viewer for notebooks: a canvas in an anywidget, frames over HTTP.

``DicomViewer(CaseStoreClient.from_env(), case_id)`` lists the case's studies and series
(a drop-down in the viewer picks another one) and opens the first series, or the one given.
For the series on show the kernel asks the store for a short-lived, series-scoped grant
(:meth:`CaseStoreClient.dicom_grant <cpms_widgets.client.CaseStoreClient.dicom_grant>`)
and hands the browser the series description URL (``meta_url``) and the grant. The browser
fetches the description and every frame itself, as raw decoded pixels, from the store at
the *same origin* as JupyterLab (through the proxy, ``store_prefix``), with the grant in the
``X-CPMS-Grant`` header, never in a URL: pixels never travel through the kernel or as
base64 JSON, and window/level runs in the browser on the raw 16-bit values.

:class:`SeriesGrants` keeps one series' grant fresh (renewed about a minute before it
expires, from a timer thread); the Panel app (:mod:`cpms_widgets.apps.dicom_app`) uses it
too, with the same front end.

The front end is ``js/dicom_viewer.js``, bundled by ``make setup`` into
``static/dicom_viewer.js``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from cpms_hub.domain import CpmsError

from ..client import CaseStoreClient
from .grant_renewal import GrantRenewal

__all__ = ["BUNDLE", "DicomViewer", "SeriesGrants", "series_choices"]

#: the esbuild bundle of js/dicom_viewer.js (built by ``make setup``)
BUNDLE = Path(__file__).parent / "static" / "dicom_viewer.js"
DEFAULT_PREFIX = "/services/cpms-store/api/v1"
_API_MARK = "/cases/"


def bundle_text() -> str:
    """The viewer's ESM (raises with what to do if it was not built)."""
    if not BUNDLE.is_file():
        raise FileNotFoundError(
            f"the DICOM viewer's front end is not built ({BUNDLE} is missing): "
            "run `make setup` to build the viewers"
        )
    return BUNDLE.read_text(encoding="utf-8")


def browser_url(store_prefix: str, path: str) -> str:
    """``path`` (a store path or URL, e.g. ``…/api/v1/cases/…/meta``) below ``store_prefix``,
    the store's API root as the browser reaches it. Placeholders (``{sop_uid}``) stay."""
    at = path.find(_API_MARK)
    rel = path[at:] if at >= 0 else "/" + path.lstrip("/")
    return store_prefix.rstrip("/") + rel


def series_choices(studies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The case's series, flat, for the viewer's drop-down (study fields copied in)."""
    out = []
    for study in studies:
        for s in study.get("series", []):
            out.append(
                {
                    "study_uid": study.get("study_uid", ""),
                    "study_date": study.get("study_date") or "",
                    "study_description": study.get("description") or "",
                    "series_uid": s["series_uid"],
                    "modality": s.get("modality") or "",
                    "description": s.get("description") or "",
                    "number": s.get("number"),
                    "instances": s.get("instances") or 0,
                    "frames": s.get("frames") or s.get("instances") or 0,
                }
            )
    return out


class SeriesGrants:
    """The grant of one series at a time, renewed before it expires.

    ``publish(fields)`` receives ``meta_url``, ``frame_url_template`` (both as the browser
    reaches them, below ``store_prefix``), ``grant`` and ``expires_at`` each time a grant is
    taken; it is called from a timer thread for renewals.
    """

    def __init__(
        self,
        client: CaseStoreClient,
        case_id: str,
        publish: Callable[[dict[str, str]], None],
        *,
        store_prefix: str = DEFAULT_PREFIX,
        auto_refresh: bool = True,
    ) -> None:
        self._client = client
        self.case_id = case_id
        self._publish = publish
        self.store_prefix = store_prefix
        self.series_uid: str | None = None
        self._renewal = GrantRenewal(self.refresh, enabled=auto_refresh)

    def open(self, series_uid: str) -> dict[str, str]:
        """Take a grant for ``series_uid`` now (and schedule its renewal)."""
        self.series_uid = series_uid
        return self.refresh()

    def refresh(self) -> dict[str, str]:
        series_uid = self.series_uid
        if series_uid is None:
            raise ValueError("no series is open")
        g = self._client.dicom_grant(self.case_id, series_uid)
        if series_uid != self.series_uid:  # another series was opened meanwhile
            return {}
        fields = {
            "meta_url": browser_url(self.store_prefix, g["meta_url"]),
            "frame_url_template": browser_url(self.store_prefix, g.get("frame_url_template", "")),
            "grant": g["grant"],
            "expires_at": g["expires_at"],
        }
        self._publish(fields)
        self._renewal.schedule(g["expires_at"])
        return fields

    def close(self) -> None:
        self._renewal.close()


class DicomViewer(anywidget.AnyWidget):
    """Browse the DICOM series of case ``case_id`` and view one, as the client's user.

    ``DicomViewer(CaseStoreClient.from_env(), case_id)`` in a notebook cell opens the first
    series; ``series_uid=`` opens another; setting :attr:`series_uid` (or the drop-down)
    switches. In the viewer: wheel, slider or arrow keys scroll; dragging sets window/level
    (CT presets in the toolbar); ctrl-drag or right-drag pans; ``+``/``-``, the buttons or
    a pinch zoom; *Measure* draws a length in mm; space or ▶ plays a multi-frame cine.
    """

    meta_url = traitlets.Unicode("").tag(sync=True)
    frame_url_template = traitlets.Unicode("").tag(sync=True)
    grant = traitlets.Unicode("").tag(sync=True)
    series = traitlets.List(traitlets.Dict()).tag(sync=True)
    series_uid = traitlets.Unicode("").tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    height = traitlets.Unicode("600px").tag(sync=True)
    autoplay = traitlets.Bool(False).tag(sync=True)
    #: the store's API root as the browser reaches it (same origin as JupyterLab)
    store_prefix = traitlets.Unicode(DEFAULT_PREFIX)
    expires_at = traitlets.Unicode("")

    def __init__(
        self,
        client: CaseStoreClient,
        case_id: str,
        series_uid: str | None = None,
        *,
        height: str = "600px",
        store_prefix: str = DEFAULT_PREFIX,
        auto_refresh: bool = True,
        autoplay: bool = False,
        **kwargs: Any,
    ) -> None:
        # the bundle's text, set per instance: a class-level Path would be read (and fail,
        # if not built) when this module is imported
        self._esm = bundle_text()
        self._client = client
        self.case_id = case_id
        self._grants = SeriesGrants(
            client, case_id, self._publish, store_prefix=store_prefix, auto_refresh=auto_refresh
        )
        choices = series_choices(client.list_studies(case_id))
        if series_uid and series_uid not in {c["series_uid"] for c in choices}:
            raise ValueError(f"series_uid: no such series in case {case_id}")
        super().__init__(
            height=height,
            store_prefix=store_prefix,
            series=choices,
            autoplay=autoplay,
            **kwargs,
        )
        wanted = series_uid or (choices[0]["series_uid"] if choices else "")
        if not wanted:
            self.message = "This case has no DICOM series yet."
        self.observe(self._on_series, names="series_uid")
        self.series_uid = wanted

    def __repr__(self) -> str:
        return f"DicomViewer(case_id={self.case_id!r}, series_uid={self.series_uid!r})"

    def _publish(self, fields: dict[str, str]) -> None:
        with self.hold_sync():
            self.grant = fields["grant"]
            self.expires_at = fields["expires_at"]
            self.frame_url_template = fields["frame_url_template"]
            # last: the front end opens the series when meta_url changes, with the new grant
            self.meta_url = fields["meta_url"]

    def _on_series(self, change: dict[str, Any]) -> None:
        uid = change["new"]
        if not uid:
            return
        try:
            self._grants.open(uid)
            self.message = ""
        except CpmsError as exc:  # shown in the viewer: the reasons carry no patient data
            with self.hold_sync():
                self.message = "; ".join(exc.reasons) or type(exc).__name__
                self.grant = ""
                self.meta_url = ""

    def refresh(self) -> None:
        """Take a new grant for the series on show now (and schedule the next renewal)."""
        self._grants.refresh()

    def reload_series(self) -> None:
        """Read the case's series list again (after an import)."""
        self.series = series_choices(self._client.list_studies(self.case_id))
        if not self.series_uid and self.series:
            self.series_uid = self.series[0]["series_uid"]

    def close(self) -> None:
        self._grants.close()
        super().close()
