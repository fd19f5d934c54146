"""A submitted case with a whole-slide image and a CT series, on a panel: the review
workspace's imaging tests start from it.

The owner creates the case, records consent to panel discussion (on a signed form),
imports the sample Aperio slide and a small synthetic CT series through the client, as a
notebook would; the case is then submitted and the panel members added through the store
(the panel workflow's own tests cover assembling a panel), with the same steps as
:mod:`tests.integration.panel_slide`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from cpms_widgets.client import CaseStoreClient
from tests.data_gen import ct_series
from tests.integration.panel_slide import consented_case, submit_to_panel
from tests.integration.test_slides_http import SAMPLE

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
    if not SAMPLE.exists():
        pytest.skip(f"sample slide not found at {SAMPLE}")
    ct_series(folder / "ct", slices=CT_SLICES, size=128)
    with CaseStoreClient(deployment.api, owner_token) as client:
        case = consented_case(client, "Imaged case under review", "biopsy and CT")
        slide = client.import_slide(case.id, SAMPLE)
        report = client.import_dicom(case.id, folder / "ct")
        held = [i["key"] for i in report["instances"] if i["status"] == "held"]
        if held:  # synthetic images carry no burned-in text: confirm, as a clinician would
            report = client.import_dicom(case.id, folder / "ct", confirm_burned_in=held)
        assert report["errors"] == 0, report
        studies = client.list_studies(case.id)
    series_uid = studies[0]["series"][0]["series_uid"]
    submit_to_panel(deployment, case.id, panel_members)
    return ImagedCase(case.id, slide["id"], series_uid)
