"""A submitted case with a slide and a panel member: what annotation tests start from.

The owner creates the case, records the patient's consent to panel discussion (on a
signed form), uploads and imports the sample Aperio slide through the client; the case is
then submitted and the panel member added as an operator would (through the store, as
the panel workflow will). :func:`consented_case` and :func:`submit_to_panel` are the two
halves around the import, for cases that carry other images too
(:mod:`tests.integration.review_imaging`).
"""

from __future__ import annotations

from datetime import date

from cpms_hub.domain import Case, CaseStatus, MemberRole
from cpms_hub.store import AuditContext
from cpms_widgets.client import CaseStoreClient
from tests.integration.test_slides_http import SAMPLE
from tests.samples import tiny_pdf

__all__ = ["panel_case_with_slide", "consented_case", "submit_to_panel"]


def consented_case(client: CaseStoreClient, title: str, description: str) -> Case:
    """A new case of the client's user with consent to panel discussion on a signed form."""
    case = client.create_case(title, description)
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
    return case


def submit_to_panel(deployment, case_id: str, panel_members: tuple[str, ...]) -> None:  # noqa: ANN001
    """Submit the case and put ``panel_members`` on its panel, through the store."""
    state = deployment.open_state()
    try:
        ctx = AuditContext(actor="test-setup")
        state.cases.set_status(case_id, CaseStatus.SUBMITTED, ctx=ctx)
        for name in panel_members:
            state.cases.add_member(case_id, name, MemberRole.PANEL_MEMBER, ctx=ctx)
    finally:
        state.close()


def panel_case_with_slide(
    deployment, owner_token: str, panel_members: tuple[str, ...] = ("panel-p",), tmp_path=None
) -> tuple[str, str]:
    """(case id, slide id) of a new submitted case with ``panel_members`` on its panel."""
    with CaseStoreClient(deployment.api, owner_token) as client:
        case = consented_case(client, "Slide under review", "biopsy of the left kidney")
        slide = client.import_slide(case.id, SAMPLE)
    submit_to_panel(deployment, case.id, panel_members)
    return case.id, slide["id"]
