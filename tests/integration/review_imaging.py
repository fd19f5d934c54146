"""A submitted case with a whole-slide image and a CT series, on a panel: the review
workspace's imaging tests start from it.

The owner creates the case, records consent to panel discussion (on a signed form),
imports the sample Aperio slide and a small synthetic CT series through the client, as a
notebook would; the case is then submitted and the panel members added through the store
(the panel workflow's own tests cover assembling a panel).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from cpms_hub.domain import CaseStatus, MemberRole
from cpms_hub.store import AuditContext
from cpms_widgets.client import CaseStoreClient
from tests.data_gen import ct_series
from tests.integration.test_slides_http import SAMPLE
from tests.samples import tiny_pdf

__all__ = ["ImagedCase", "CT_SLICES", "imaged_review_case"]

#: slices of the synthetic CT series (small: the import and the browser stay quick)
CT_SLICES = 12


@dataclass(frozen=True)
class ImagedCase:
    case_id: str
    slide_id: str
    series_uid: str


def imaged_review_case(
    deployment, owner_token: str, folder: Path, panel_members: tuple[str, ...] = ("panel-p",)
) -> ImagedCase:
    """A new submitted case with one slide and one CT series, ``panel_members`` on it."""
    ct_series(folder / "ct", slices=CT_SLICES, size=128)
    with CaseStoreClient(deployment.api, owner_token) as client:
        case = client.create_case("Imaged case under review", "biopsy and CT")
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
        report = client.import_dicom(case.id, folder / "ct")
        held = [i["key"] for i in report["instances"] if i["status"] == "held"]
        if held:  # synthetic images carry no burned-in text: confirm, as a clinician would
            report = client.import_dicom(case.id, folder / "ct", confirm_burned_in=held)
        assert report["errors"] == 0, report
        studies = client.list_studies(case.id)
    series_uid = studies[0]["series"][0]["series_uid"]
    state = deployment.open_state()
    try:
        ctx = AuditContext(actor="test-setup")
        state.cases.set_status(case.id, CaseStatus.SUBMITTED, ctx=ctx)
        for name in panel_members:
            state.cases.add_member(case.id, name, MemberRole.PANEL_MEMBER, ctx=ctx)
    finally:
        state.close()
    return ImagedCase(case.id, slide["id"], series_uid)
