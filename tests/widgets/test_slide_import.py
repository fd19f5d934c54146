"""SlideImportWidget and ``client.import_slide(case_id, path)`` against the real deployment.

The real Aperio sample goes from a path in the user's server through the chunked upload
and the import; the bar reaches the end and the report lists what de-identification
removed. Every kind of bad slide (corrupt TIFF, truncated SVS, a photo, absurd dimensions,
one part of a multi-file format) is refused with a clear reason, the store stays up, and
no slide is created.
"""

from __future__ import annotations

import shutil

import pytest

from cpms_hub.domain import CpmsError
from cpms_widgets import CaseStoreClient, SlideImportWidget
from tests.integration.test_slides_http import SAMPLE
from tests.samples import broken_slides

pytestmark = pytest.mark.deployment


@pytest.fixture(scope="module")
def client(deployment, tokens):
    if not SAMPLE.exists():
        pytest.skip(f"sample slide not found at {SAMPLE}")
    with CaseStoreClient(deployment.api, tokens["clin-a"]) as c:
        yield c


def test_widget_imports_a_slide_with_progress_and_report(client, tmp_path) -> None:
    case = client.create_case("Slide import", "biopsy")
    widget = SlideImportWidget(client, case.id)
    assert "No slides yet" in widget.slides.value
    path = tmp_path / "CMU-1-Small-Region.svs"
    shutil.copyfile(SAMPLE, path)
    widget.path.value = str(path)
    widget.import_button.click()  # uploads and imports in a thread, as in a notebook
    widget.wait(timeout=120)
    assert widget.problems.value == "", widget.problems.value
    assert widget.progress.value == widget.progress.max == path.stat().st_size
    slide = widget.last_slide
    assert slide is not None and (slide["width"], slide["height"]) == (2220, 2967)
    assert "label" in widget.report.value and "macro" in widget.report.value
    assert "aperio.Filename" in widget.report.value
    assert "2220 × 2967" in widget.slides.value
    # the identifying original is gone; only the de-identified copy is a file of the case
    assert [f.name for f in client.list_files(case.id)] == [f"{slide['id']}.svs"]
    assert [s["id"] for s in client.list_slides(case.id)] == [slide["id"]]


def test_client_import_slide_reports_progress(client, tmp_path) -> None:
    case = client.create_case("Slide import by client", "biopsy")
    seen: list[tuple[int, int]] = []
    slide = client.import_slide(case.id, SAMPLE, progress=lambda s, t: seen.append((s, t)))
    assert seen[-1] == (SAMPLE.stat().st_size, SAMPLE.stat().st_size)
    assert {"label", "macro"} <= set(slide["report"]["removed_images"])


@pytest.mark.parametrize(
    ("case", "status", "says"),
    [
        ("corrupt-tiff", 422, "slide"),
        ("truncated-svs", 422, "slide"),
        ("non-slide-image", 415, "'png'"),
        ("absurd-dimensions", 422, "absurd"),
        ("mrxs-without-folder", 415, "'mirax'"),
        ("vms-without-parts", 415, "'hamamatsu-vms'"),
    ],
)
def test_bad_slides_refused_clearly_nothing_kept(
    client, deployment, tmp_path, case, status, says
) -> None:
    name, data = broken_slides(SAMPLE.read_bytes())[case]
    path = tmp_path / name
    path.write_bytes(data)
    target = client.create_case(f"Bad slide {case}", "biopsy")
    with pytest.raises(CpmsError) as info:
        client.import_slide(target.id, path)
    assert info.value.status == status, info.value
    text = " ".join(info.value.reasons)
    assert says in text, text
    assert client.list_slides(target.id) == []
    # what is left is the upload as sent, never a partial slide
    assert [f.name for f in client.list_files(target.id)] == [name]
    assert client.health()

    widget = SlideImportWidget(client, target.id)
    widget.path.value = str(path)
    assert widget.import_() is None
    assert says.strip("'") in widget.problems.value
    assert client.list_slides(target.id) == []


def test_widget_refuses_before_sending(client, tmp_path) -> None:
    widget = SlideImportWidget(client)
    assert "Save the case first" in widget.slides.value
    case = client.create_case("Slide import refused", "biopsy")
    widget.set_case(case.id)
    for value, why in (
        ("", "give the path"),
        (str(tmp_path), "is a folder"),
        (str(tmp_path / "nope.svs"), "no such file"),
    ):
        widget.path.value = value
        assert widget.import_() is None
        assert why in widget.problems.value
    assert client.list_files(case.id) == []
