"""The coordinator's dashboard: the network's cases, panel assembly, monitoring, activity.

A coordinator sees every case submitted to their network (summaries only: ids,
states, urgency, deadlines, counts — the store sends no clinical content
here), assembles a panel for one (experts found by expertise, name or
hospital, in their network or, for guests, in any), sets its urgency and
deadline, starts the discussion, closes or reopens it, watches the
monitoring view (open panels, overdue panels, panels that would close with
fewer than two contributions) and reads the activity report as charts.
The store enforces who may do what and the lifecycle; refusals show their
reasons.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from cpms_hub.domain import Urgency
from cpms_hub.domain.review import Panel, PanelRole

from ..client import CaseStoreClient
from .activity_charts import activity_figures
from .inbox import workspace_link
from .status import StatusLine

__all__ = ["CoordinatorDashboard"]

_SUMMARY_COLUMNS = [
    "case_id",
    "network",
    "status",
    "urgency",
    "deadline",
    "lead",
    "members",
    "accepted",
    "contributions",
    "overdue",
]


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows or [], columns=_SUMMARY_COLUMNS)
    return df[[c for c in _SUMMARY_COLUMNS if c in df.columns]]


class CoordinatorDashboard(Viewer):
    """Cases of my network, panel assembly, monitoring and the activity report."""

    user = param.String(default="")
    cases = param.List(default=[], doc="GET /panels?scope=network")
    selected_case = param.String(default="", doc="The case being worked on")
    panel = param.ClassSelector(class_=Panel, default=None, allow_None=True)

    expert_query = param.String(default="")
    expert_network = param.String(default="", doc="'' searches every network (guests)")
    experts = param.List(default=[])
    chosen = param.List(default=[], doc="[{user, role}] of the panel being assembled")
    urgency = param.Selector(default=Urgency.ROUTINE.value, objects=[u.value for u in Urgency])
    deadline = param.CalendarDate(default=None, allow_None=True)
    invitation_days = param.Integer(default=7, bounds=(1, 60))

    monitor = param.Dict(default={})
    activity = param.Dict(default={})

    def __init__(self, client: CaseStoreClient, **params) -> None:
        super().__init__(**params)
        self.client = client
        self.status = StatusLine()
        if self.deadline is None:
            self.deadline = date.today() + timedelta(days=21)
        self.refresh()

    # -- reading -------------------------------------------------------------------

    def refresh(self) -> None:
        self.status.run("", self._load)
        self.status.message = ""

    def _load(self) -> bool:
        self.cases = self.client.list_panels("network")
        self.monitor = self.client.monitor_report()
        self.activity = self.client.activity_report()
        return True

    def select(self, case_id: str) -> None:
        self.selected_case = case_id
        self.chosen = []
        self.panel = None
        if not case_id:
            return
        summary = next((c for c in self.cases if c["case_id"] == case_id), {})
        if summary.get("lead") or summary.get("members"):
            self.panel = self.status.run("", self.client.get_panel, case_id)
            if self.panel is not None:
                self.chosen = [
                    {"user": m.user, "role": m.role.value}
                    for m in self.panel.members
                    if m.status.value in ("invited", "accepted")
                ]
                self.urgency = self.panel.urgency.value
                self.deadline = self.panel.deadline

    # -- assembling a panel --------------------------------------------------------

    def search(self, query: str | None = None, network: str | None = None) -> list[dict]:
        q = self.expert_query if query is None else query
        net = self.expert_network if network is None else network
        found = self.status.run("", self.client.search_experts, q, net or None)
        self.experts = found or []
        return self.experts

    def add_member(self, user: str, role: PanelRole | str = PanelRole.MEMBER) -> None:
        role = PanelRole(role).value
        chosen = [m for m in self.chosen if m["user"] != user]
        if role == PanelRole.LEAD.value:
            # exactly one lead: the previous one stays on the panel as a member
            chosen = [
                {**m, "role": PanelRole.MEMBER.value} if m["role"] == PanelRole.LEAD.value else m
                for m in chosen
            ]
        self.chosen = [*chosen, {"user": user, "role": role}]

    def remove_member(self, user: str) -> None:
        self.chosen = [m for m in self.chosen if m["user"] != user]

    def assemble(self) -> bool:
        if not self.selected_case:
            self.status.fail("case: choose a case first")
            return False
        if self.deadline is None:
            self.status.fail("deadline: choose a deadline")
            return False
        panel = self.status.run(
            "Panel assembled; the members are invited",
            self.client.assemble_panel,
            self.selected_case,
            list(self.chosen),
            urgency=self.urgency,
            deadline=self.deadline,
            invitation_days=self.invitation_days,
        )
        if panel is not None:
            self.panel = panel
            self._load()
        return panel is not None

    def lifecycle(self, action: str) -> bool:
        """``start-discussion``, ``close`` or ``reopen`` the selected case's panel."""
        panel = self.status.run(
            f"Done: {action}", self.client.panel_action, self.selected_case, action
        )
        if panel is not None:
            self.panel = panel
            self._load()
        return panel is not None

    # -- views ---------------------------------------------------------------------

    @param.depends("cases")
    def _cases_view(self):  # noqa: ANN202
        df = _frame(self.cases)
        table = pn.widgets.Tabulator(
            df,
            disabled=True,
            show_index=False,
            selectable=1,
            pagination="local",
            page_size=15,
            sizing_mode="stretch_width",
            name="network-cases",
        )

        def on_select(event) -> None:  # noqa: ANN001
            if event.new:
                self.select(str(df.iloc[event.new[0]]["case_id"]))

        table.param.watch(on_select, "selection")
        return table

    @param.depends("experts", "chosen")
    def _experts_view(self):  # noqa: ANN202
        rows = []
        for e in self.experts[:50]:
            text = pn.pane.Markdown(
                f"**{e['name']}** · {e.get('full_name', '')} · {e.get('hospital', '')} · "
                f"{e.get('network', '')} · {', '.join(e.get('expertise', []))} · "
                f"{e.get('timezone', '')}",
                sizing_mode="stretch_width",
            )
            buttons = []
            for role in PanelRole:
                b = pn.widgets.Button(name=f"as {role.value}", width=100)
                b.on_click(lambda _e, u=e["name"], r=role: self.add_member(u, r))
                buttons.append(b)
            rows.append(pn.Row(text, *buttons, sizing_mode="stretch_width"))
        chosen = "\n".join(f"- {m['user']} ({m['role']})" for m in self.chosen) or "nobody yet"
        return pn.Column(
            *rows, pn.pane.Markdown(f"**Panel:**\n{chosen}"), sizing_mode="stretch_width"
        )

    @param.depends("selected_case", "panel")
    def _selected_view(self):  # noqa: ANN202
        if not self.selected_case:
            return pn.pane.Markdown("Choose a case in the table.")
        lines = [f"**Case** [{self.selected_case[:8]}…]({workspace_link(self.selected_case)})"]
        if self.panel is not None:
            p = self.panel
            lines.append(
                f"{p.status.value} · urgency {p.urgency.value} · deadline {p.deadline} · "
                f"lead {p.lead or '—'}"
            )
            lines += [
                f"- {m.user} ({m.role.value}, {m.network}): {m.status.value}"
                + (f" — {m.reason}" if m.reason else "")
                for m in p.members
            ]
        buttons = []
        for action in ("start-discussion", "close", "reopen"):
            b = pn.widgets.Button(name=action.replace("-", " ").capitalize(), width=150)
            b.on_click(lambda _e, a=action: self.lifecycle(a))
            buttons.append(b)
        return pn.Column(pn.pane.Markdown("\n".join(lines)), pn.Row(*buttons))

    @param.depends("monitor")
    def _monitor_view(self):  # noqa: ANN202
        m = self.monitor or {}
        return pn.Column(
            pn.pane.Markdown(f"### Open panels ({len(m.get('open', []))})"),
            pn.widgets.Tabulator(_frame(m.get("open", [])), disabled=True, show_index=False),
            pn.pane.Markdown(f"### Overdue ({len(m.get('overdue', []))})"),
            pn.widgets.Tabulator(_frame(m.get("overdue", [])), disabled=True, show_index=False),
            pn.pane.Markdown(
                f"### Would close with fewer than two contributions "
                f"({len(m.get('few_contributions', []))})"
            ),
            pn.widgets.Tabulator(
                _frame(m.get("few_contributions", [])), disabled=True, show_index=False
            ),
            sizing_mode="stretch_width",
        )

    @param.depends("activity")
    def _activity_view(self):  # noqa: ANN202
        figs = activity_figures(self.activity or {})
        return pn.GridBox(*(pn.pane.Bokeh(f) for f in figs), ncols=2)

    def __panel__(self):  # noqa: ANN204
        assemble = pn.Column(
            self._selected_view,
            pn.Row(
                pn.widgets.TextInput.from_param(
                    self.param.expert_query,
                    name="Expertise, name or hospital",
                    placeholder="Expertise, name or hospital",
                ),
                pn.widgets.TextInput.from_param(
                    self.param.expert_network, name="Network ('' = all, for guests)"
                ),
            ),
            self._search_button(),
            self._experts_view,
            pn.Row(
                pn.widgets.Select.from_param(self.param.urgency, name="Urgency"),
                pn.widgets.DatePicker.from_param(self.param.deadline, name="Deadline"),
                pn.widgets.IntInput.from_param(self.param.invitation_days, name="Days to answer"),
            ),
            self._assemble_button(),
            sizing_mode="stretch_width",
        )
        tabs = pn.Tabs(
            ("Network cases", pn.Column(self._cases_view, assemble)),
            ("Monitoring", self._monitor_view),
            ("Activity", self._activity_view),
            dynamic=True,
            sizing_mode="stretch_width",
        )
        return pn.Column(
            pn.pane.Markdown("## Coordinator"), self.status, tabs, sizing_mode="stretch_width"
        )

    def _search_button(self):  # noqa: ANN202
        b = pn.widgets.Button(name="Search experts", width=150)
        b.on_click(lambda _e: self.search())
        return b

    def _assemble_button(self):  # noqa: ANN202
        b = pn.widgets.Button(name="Assemble panel", button_type="primary", width=150)
        b.on_click(lambda _e: self.assemble())
        return b
