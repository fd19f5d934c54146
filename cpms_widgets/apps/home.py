"""The review apps' front page: who is signed in, and which app this URL asks for.

``ReviewHome`` picks the app from the URL's query (``?case=<id>`` → the
review workspace, ``?view=coordinator`` → the coordinator's dashboard,
nothing → the inbox, plus the dashboard for coordinators) and builds it with
the session's store client. Tests build it directly with any client.
"""

from __future__ import annotations

import panel as pn
import param
from panel.viewable import Viewer

from ..client import CaseStoreClient
from .inbox import MemberInbox
from .session import session_client, session_user

__all__ = ["ReviewHome"]


class ReviewHome(Viewer):
    """The signed-in person's review page."""

    user = param.String(default="", doc="The signed-in account")
    view = param.Selector(default="inbox", objects=["inbox", "case", "coordinator"])
    case_id = param.String(default="", doc="The case of the workspace (view='case')")

    def __init__(self, client: CaseStoreClient, **params) -> None:
        super().__init__(**params)
        self.client = client
        self._me = client.me()
        self.user = self.user or self._me.get("name", "")
        self._body = pn.Column(sizing_mode="stretch_width")
        self._build()

    @classmethod
    def for_session(cls) -> ReviewHome:
        """The page for this browser session: its user's client, the app its URL names."""
        args = pn.state.session_args or {}

        def arg(name: str) -> str:
            values = args.get(name) or [b""]
            return values[0].decode("utf-8", "replace")

        case_id = arg("case")
        view = "case" if case_id else ("coordinator" if arg("view") == "coordinator" else "inbox")
        client = session_client()
        # the session's connections to the store end with the browser session
        pn.state.on_session_destroyed(lambda _ctx: client.close())
        return cls(client, user=session_user(), view=view, case_id=case_id)

    @property
    def roles(self) -> set[str]:
        return set(self._me.get("roles", []))

    @param.depends("view", "case_id", watch=True)
    def _build(self) -> None:
        if self.view == "case" and self.case_id:
            from .workspace import ReviewWorkspace

            app: Viewer = ReviewWorkspace(self.client, case_id=self.case_id, user=self.user)
        elif self.view == "coordinator" or (
            self.view == "inbox"
            and "coordinator" in self.roles
            and "panel-member" not in self.roles
        ):
            from .coordinator import CoordinatorDashboard

            app = CoordinatorDashboard(self.client, user=self.user)
        else:
            app = MemberInbox(self.client, user=self.user)
        self.app = app
        self._body.objects = [app]

    def __panel__(self):  # noqa: ANN204
        links = "[Inbox](?)" + (
            " · [Coordinator](?view=coordinator)" if "coordinator" in self.roles else ""
        )
        header = pn.pane.Markdown(
            f"**CPMS review** · signed in as `{self.user}` · {links}", sizing_mode="stretch_width"
        )
        return pn.Column(header, self._body, sizing_mode="stretch_width")
