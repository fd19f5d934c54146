"""A panel member's inbox: invitations to review cases, the panels they sit on, notices.

Invitations carry no clinical content (network, role, urgency, deadline, who
invited, when it expires); accepting opens the case's review workspace,
declining needs a reason. The in-app notifications are kinds and links only.
Every action is a store call as the signed-in user; the store decides.
"""

from __future__ import annotations

import panel as pn
import param
from panel.viewable import Viewer

from cpms_hub.domain.review import Invitation, InvitationStatus, Notification

from ..client import CaseStoreClient
from .status import StatusLine

__all__ = ["MemberInbox", "workspace_link"]


def workspace_link(case_id: str) -> str:
    """The review workspace of ``case_id`` (case ids are random: no patient data in URLs)."""
    return f"?case={case_id}"


class MemberInbox(Viewer):
    """Invitations (accept / decline with a reason), my panels and my notifications."""

    user = param.String(default="")
    invitations = param.List(default=[], item_type=Invitation)
    panels = param.List(default=[], doc="Summaries of the panels I sit on (GET /panels)")
    notifications = param.List(default=[], item_type=Notification)
    decline_reason = param.String(default="", doc="Why I decline (required to decline)")

    def __init__(self, client: CaseStoreClient, **params) -> None:
        super().__init__(**params)
        self.client = client
        self.status = StatusLine()
        self.refresh()

    # -- actions (the buttons call these; so can tests) --------------------------

    def refresh(self) -> None:
        got = self.status.run("", self._load)
        if got is not None:
            self.status.message = ""

    def _load(self) -> bool:
        self.invitations = self.client.invitations()
        self.panels = self.client.list_panels("mine")
        self.notifications = self.client.notifications()
        return True

    def pending(self) -> list[Invitation]:
        return [i for i in self.invitations if i.status is InvitationStatus.INVITED]

    def accept(self, case_id: str) -> bool:
        done = self.status.run("Invitation accepted", self.client.accept_invitation, case_id)
        if done is not None:
            self._load()
        return done is not None

    def decline(self, case_id: str, reason: str | None = None) -> bool:
        reason = self.decline_reason if reason is None else reason
        if not reason.strip():
            self.status.fail("reason: say why you decline")
            return False
        done = self.status.run(
            "Invitation declined", self.client.decline_invitation, case_id, reason
        )
        if done is not None:
            self.decline_reason = ""
            self._load()
        return done is not None

    # -- view ----------------------------------------------------------------------

    def _invitation_row(self, inv: Invitation):  # noqa: ANN202
        text = pn.pane.Markdown(
            f"**{inv.role.value}** on a case of **{inv.network}** · urgency "
            f"{inv.urgency.value} · deadline {inv.deadline.isoformat()} · invited by "
            f"{inv.invited_by} · answer by {inv.expires_at:%Y-%m-%d %H:%M} UTC · "
            f"*{inv.status.value}*",
            sizing_mode="stretch_width",
        )
        if inv.status is not InvitationStatus.INVITED:
            return pn.Row(text, sizing_mode="stretch_width")
        accept = pn.widgets.Button(name="Accept", button_type="success", width=90)
        decline = pn.widgets.Button(name="Decline", button_type="warning", width=90)
        accept.on_click(lambda _e, cid=inv.case_id: self.accept(cid))
        decline.on_click(lambda _e, cid=inv.case_id: self.decline(cid))
        return pn.Row(text, accept, decline, sizing_mode="stretch_width")

    @param.depends("invitations")
    def _invitations_view(self):  # noqa: ANN202
        if not self.invitations:
            return pn.pane.Markdown("No invitations.")
        return pn.Column(*(self._invitation_row(i) for i in self.invitations))

    @param.depends("panels")
    def _panels_view(self):  # noqa: ANN202
        if not self.panels:
            return pn.pane.Markdown("You sit on no panel yet.")
        lines = [
            f"- [{p['case_id'][:8]}… · {p['network']}]({workspace_link(p['case_id'])}) · "
            f"{p['status']} · urgency {p['urgency']} · deadline {p['deadline']}"
            + (" · **overdue**" if p.get("overdue") else "")
            for p in self.panels
        ]
        return pn.pane.Markdown("\n".join(lines))

    @param.depends("notifications")
    def _notifications_view(self):  # noqa: ANN202
        if not self.notifications:
            return pn.pane.Markdown("Nothing new.")
        lines = [
            f"- {n.created_at:%Y-%m-%d %H:%M} · {n.kind.value}"
            + (f" · [open]({workspace_link(n.case_id)})" if n.case_id else "")
            + ("" if n.read_at else " · **new**")
            for n in self.notifications[:50]
        ]
        return pn.pane.Markdown("\n".join(lines))

    def __panel__(self):  # noqa: ANN204
        reason = pn.widgets.TextInput.from_param(
            self.param.decline_reason,
            name="Reason for declining",
            placeholder="Reason for declining",
            width=400,
        )
        refresh = pn.widgets.Button(name="Refresh", width=90)
        refresh.on_click(lambda _e: self.refresh())
        return pn.Column(
            pn.pane.Markdown("## Inbox"),
            self.status,
            pn.pane.Markdown("### Invitations"),
            self._invitations_view,
            reason,
            pn.pane.Markdown("### My panels"),
            self._panels_view,
            pn.pane.Markdown("### Notifications"),
            self._notifications_view,
            refresh,
            sizing_mode="stretch_width",
            name="inbox",
        )
