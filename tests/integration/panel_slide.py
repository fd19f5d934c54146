"""A submitted case with a slide and a panel member: what annotation tests start from.

The owner creates the case, records the patient's consent to panel discussion (on a
signed form), uploads and imports the sample Aperio slide through the client; the case is
then submitted and the panel member added as an operator would (through the store, as
the panel workflow will).
"""

from __future__ import annotations

from datetime import date

from cpms_hub.domain import CaseStatus, MemberRole
from cpms_hub.store import AuditContext
from cpms_widgets.client import CaseStoreClient
from tests.integration.test_slides_http import SAMPLE
from tests.samples import tiny_pdf

__all__ = ["panel_case_with_slide"]


def panel_case_with_slide(
    deployment, owner_token: str, panel_members: tuple[str, ...] = ("panel-p",), tmp_path=None
) -> tuple[str, str]:
    """(case id, slide id) of a new submitted case with ``panel_members`` on its panel."""
    with CaseStoreClient(deployment.api, owner_token) as client:
        case = client.create_case("Slide under review", "biopsy of the left kidney")
        form = client._request(
            "POST",
            f"/cases/{case.id}/files",
            content=tiny_pdf(),
            headers={"X-CPMS-Filename": "consent.pdf", "Content-Type": "application/pdf"},
        )
        client.record_consent(
            case.id,
            scopes=["panel-discussion"],
            form_version="v1",
            language="en",
            signed_on=date(2026, 1, 15),
            form_file_id=form["id"],
        )
        slide = client.import_slide(case.id, SAMPLE)
    state = deployment.open_state()
    try:
        ctx = AuditContext(actor="test-setup")
        state.cases.set_status(case.id, CaseStatus.SUBMITTED, ctx=ctx)
        for name in panel_members:
            state.cases.add_member(case.id, name, MemberRole.PANEL_MEMBER, ctx=ctx)
    finally:
        state.close()
    return case.id, slide["id"]
