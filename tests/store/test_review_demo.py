"""The demo seed: one case with a panel in discussion, one waiting for a panel; idempotent."""

from __future__ import annotations

from cpms_hub.demo import NETWORK, seed
from cpms_hub.domain import CaseStatus
from cpms_hub.state import State
from cpms_hub.store import AuditContext


def test_the_demo_has_a_panel_in_discussion(backend: State) -> None:
    seed(backend)
    seed(backend)  # a second run adds nothing
    panels = backend.review.list_panels(
        user="coord-jansen", network=NETWORK, scope="network", ctx=AuditContext("coord-jansen")
    )
    by_status = {p.status: p for p in panels}
    assert set(by_status) == {CaseStatus.IN_DISCUSSION, CaseStatus.SUBMITTED}
    discussing = by_status[CaseStatus.IN_DISCUSSION]
    assert discussing.lead == "prof-rossi"
    assert (discussing.members, discussing.accepted, discussing.contributions) == (3, 3, 2)
    assert backend.accounts.get("prof-silva").network != NETWORK
    assert "ORPHA:100" in backend.accounts.get("prof-rossi").expertise
    assert [i.case_id for i in backend.review.invitations("dr-schmidt")] == [discussing.case_id]
