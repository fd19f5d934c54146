"""What the last action of an app did: done, or refused with the store's reasons.

Every action of the review apps goes through :meth:`StatusLine.run`, which
turns a refused request (:class:`~cpms_hub.domain.CpmsError`: 403, 409, 422, …)
into a message naming the reasons the store gave, so the page stays usable
and tests can read ``status.error`` instead of a browser. Reasons never hold
patient data (the store guarantees it); we add none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import panel as pn
import param
from panel.viewable import Viewer

from cpms_hub.domain import CpmsError

__all__ = ["StatusLine"]

T = TypeVar("T")


class StatusLine(Viewer):
    """The outcome of the last action: ``message`` when it worked, ``error`` when not."""

    message = param.String(default="")
    error = param.String(default="")

    def run(self, done: str, action: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Call ``action``; on success say ``done``, on a refusal show the reasons."""
        try:
            result = action(*args, **kwargs)
        except CpmsError as exc:
            self.message = ""
            self.error = "; ".join(exc.reasons) or str(exc)
            return None
        self.error = ""
        self.message = done
        return result

    def fail(self, reason: str) -> None:
        self.message = ""
        self.error = reason

    @param.depends("message", "error")
    def _view(self):  # noqa: ANN202
        if self.error:
            return pn.pane.Alert(self.error, alert_type="danger", sizing_mode="stretch_width")
        if self.message:
            return pn.pane.Alert(self.message, alert_type="success", sizing_mode="stretch_width")
        return pn.Spacer(height=0)

    def __panel__(self):  # noqa: ANN204
        return pn.panel(self._view)
