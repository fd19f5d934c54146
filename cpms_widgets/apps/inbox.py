"""A panel member's inbox: invitations to review cases, accepted or declined with a reason."""

from __future__ import annotations

import panel as pn
import param
from panel.viewable import Viewer

from ..client import CaseStoreClient

__all__ = ["MemberInbox"]


class MemberInbox(Viewer):
    user = param.String(default="")

    def __init__(self, client: CaseStoreClient, **params) -> None:
        super().__init__(**params)
        self.client = client

    def __panel__(self):  # noqa: ANN204
        return pn.Column(pn.pane.Markdown("## Inbox"), name="inbox")
