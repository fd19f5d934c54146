"""DicomImportWidget and DicomViewer against the real deployment (no browser).

The import widget uploads a folder of synthetic CT through the chunked upload with its
bar moving to the end and shows the store's de-identification report; refusals name the
field and import nothing. The viewer lists the case's series, takes a series-scoped grant
and hands the browser URLs below the store's prefix (same origin as JupyterLab); the
description behind them answers with the grant and only with it; switching series takes a
new grant; another hospital's clinician cannot open the case's images.
"""

from __future__ import annotations

import httpx
import pytest

from cpms_hub.domain import CpmsError
from cpms_widgets import CaseStoreClient, DicomImportWidget, DicomViewer
from tests.data_gen import ct_series, us_cine

pytestmark = pytest.mark.deployment

SLICES = 6


@pytest.fixture(scope="module")
def client(deployment, tokens):
    with CaseStoreClient(deployment.api, tokens["clin-a"]) as c:
        yield c


@pytest.fixture(scope="module")
def imaged_case(client, tmp_path_factory):
    """A case with a small CT series and an ultrasound cine, imported by the widget."""
    folder = tmp_path_factory.mktemp("dicom")
    ct_series(folder / "ct", slices=SLICES, size=64)
    us_cine(folder / "us" / "cine.dcm", frames=6, rows=48, columns=64)
    case = client.create_case("DICOM widgets", "imaging")
    widget = DicomImportWidget(client, case.id)
    seen: list[dict] = []
    widget.on_imported(seen.append)
    widget.path.value = str(folder)
    widget.import_button.click()  # imports in a thread, as in a notebook
    widget.wait(timeout=180)
    return case, widget, seen


def test_import_widget_shows_progress_and_the_report(imaged_case) -> None:
    _case, widget, seen = imaged_case
    assert widget.problems.value.count("Imported") == 1, widget.problems.value
    report = widget.last_report
    assert report is not None and seen == [report]
    assert report["errors"] == 0, report
    assert report["stored"] + report["held"] == SLICES + 1
    assert widget.progress.value == widget.progress.max > 1
    assert "stored" in widget.report.value
    # keys and messages of the report are shown as they come: no patient data in them
    assert "SYNTHETIC" not in widget.report.value and "SYN-0" not in widget.report.value


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: str(p / "missing.dcm"), "no such file or folder"),
        (lambda p: (p / "empty.dcm").write_bytes(b"") or str(p / "empty.dcm"), "empty"),
        (lambda p: (p / "nothing").mkdir() or str(p / "nothing"), "holds no files"),
        (lambda p: "", "give the path"),
    ],
)
def test_import_refusals_name_the_field_and_import_nothing(client, tmp_path, make, why) -> None:
    case = client.create_case("DICOM refused", "imaging")
    widget = DicomImportWidget(client, case.id)
    widget.path.value = make(tmp_path)
    assert widget.run() is None
    assert "path" in widget.problems.value and why in widget.problems.value
    assert client.list_studies(case.id) == []


def test_import_needs_a_saved_case(client) -> None:
    widget = DicomImportWidget(client)
    widget.path.value = "/etc/hostname"
    assert widget.run() is None
    assert "save the case" in widget.problems.value


def test_viewer_lists_series_and_hands_the_browser_a_grant(deployment, client, imaged_case):
    case, _widget, _seen = imaged_case
    viewer = DicomViewer(client, case.id, auto_refresh=False)
    try:
        modalities = sorted(s["modality"] for s in viewer.series)
        assert modalities == ["CT", "US"], viewer.series
        assert viewer.series_uid == viewer.series[0]["series_uid"]
        prefix = f"/services/cpms-store/api/v1/cases/{case.id}/dicom/series/"
        assert viewer.meta_url.startswith(prefix) and viewer.meta_url.endswith("/meta")
        assert viewer.grant and viewer.grant not in viewer.meta_url
        # the URL works from the browser's origin, with the grant in the header only
        url = deployment.url + viewer.meta_url
        meta = httpx.get(url, headers={"X-CPMS-Grant": viewer.grant}, trust_env=False)
        assert meta.status_code == 200, meta.text
        assert meta.json()["instances"]
        assert httpx.get(url, trust_env=False).status_code in (401, 403)

        # the drop-down sets series_uid: the kernel takes a grant for the other series
        first_url, first_grant = viewer.meta_url, viewer.grant
        other = next(s for s in viewer.series if s["series_uid"] != viewer.series_uid)
        viewer.series_uid = other["series_uid"]
        assert viewer.meta_url != first_url and other["series_uid"] in viewer.meta_url
        assert viewer.grant != first_grant
        meta = httpx.get(
            deployment.url + viewer.meta_url,
            headers={"X-CPMS-Grant": viewer.grant},
            trust_env=False,
        ).json()
        assert meta["instances"][0]["frames"] == 6

        # a renewal keeps the series and changes the grant
        before = viewer.grant
        viewer.refresh()
        assert viewer.grant != before and other["series_uid"] in viewer.meta_url
    finally:
        viewer.close()


def test_viewer_refuses_unknown_series_and_other_hospitals(deployment, tokens, imaged_case):
    case, _widget, _seen = imaged_case
    with CaseStoreClient(deployment.api, tokens["clin-a"]) as c:
        with pytest.raises(ValueError, match="series_uid"):
            DicomViewer(c, case.id, "1.2.3.4", auto_refresh=False)
    with CaseStoreClient(deployment.api, tokens["clin-b"]) as other:
        with pytest.raises(CpmsError):
            DicomViewer(other, case.id, auto_refresh=False)


def test_held_images_are_confirmed_from_the_kept_upload(client, tmp_path) -> None:
    import pydicom

    path = us_cine(tmp_path / "burned.dcm", frames=2, rows=32, columns=32)
    ds = pydicom.dcmread(path)
    ds.BurnedInAnnotation = "YES"  # declares text in the pixels: never stored silently
    ds.save_as(path)
    case = client.create_case("DICOM held", "imaging")
    widget = DicomImportWidget(client, case.id)
    widget.path.value = str(path)
    report = widget.run()
    assert report is not None and report["held"] == 1 and report["stored"] == 0, report
    assert widget.held_box.layout.display == "" and len(widget.held.options) == 1
    assert client.list_studies(case.id) == []

    # nothing chosen: refused, by field
    assert widget.confirm_selected() is None
    assert "held" in widget.problems.value

    widget.held.value = tuple(widget.held.options)
    confirmed = widget.confirm_selected()
    assert confirmed is not None and confirmed["stored"] == 1, confirmed
    assert widget.held_box.layout.display == "none"
    assert [s["modality"] for st in client.list_studies(case.id) for s in st["series"]] == ["US"]


def test_viewer_of_a_case_without_images_opens_after_an_import(client, tmp_path) -> None:
    case = client.create_case("DICOM later", "imaging")
    viewer = DicomViewer(client, case.id, auto_refresh=False)
    try:
        assert viewer.series == [] and viewer.meta_url == "" and viewer.grant == ""
        assert "no DICOM series" in viewer.message
        importer = DicomImportWidget(client, case.id)
        importer.on_imported(lambda _report: viewer.reload_series())
        importer.path.value = str(ct_series(tmp_path / "ct", slices=2, size=32)[0].parent)
        assert importer.run() is not None
        assert [s["modality"] for s in viewer.series] == ["CT"]
        assert viewer.series_uid == viewer.series[0]["series_uid"]
        assert viewer.meta_url.endswith("/meta") and viewer.grant and viewer.message == ""
    finally:
        viewer.close()
