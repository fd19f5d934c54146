"""Panel apps of the review (the ``cpms-review`` service): ``pn.viewable.Viewer`` classes.

- :class:`MemberInbox` — invitations (accept / decline with a reason), my panels, notices.
- :class:`ReviewWorkspace` — one case: summary, images, contributions, discussion,
  requests for information, meetings, the outcome and its signatures.
- :class:`CoordinatorDashboard` — the network's cases, panel assembly, monitoring,
  the activity report.
- :class:`ReviewHome` — the page ``panel serve`` shows (:mod:`.review`), picking one of
  the above from the URL.

Each takes a :class:`~cpms_widgets.client.CaseStoreClient` (in the service: the
signed-in user's, from the hub OAuth login) and exposes its actions as methods
and its state as parameters, so it is tested without a browser. Imported on
first use, so importing :mod:`cpms_widgets` does not load Panel.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .coordinator import CoordinatorDashboard
    from .home import ReviewHome
    from .inbox import MemberInbox
    from .workspace import ReviewWorkspace

__all__ = ["CoordinatorDashboard", "MemberInbox", "ReviewHome", "ReviewWorkspace"]

_WHERE = {
    "CoordinatorDashboard": "coordinator",
    "MemberInbox": "inbox",
    "ReviewHome": "home",
    "ReviewWorkspace": "workspace",
}


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy attributes
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
