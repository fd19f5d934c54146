"""AttachmentsWidget against the real deployment: a file from the user's server, by path,
through the chunked upload, with the progress bar moving to the end."""

from __future__ import annotations

import os

import pytest

from cpms_widgets import AttachmentsWidget, CaseStoreClient

pytestmark = pytest.mark.deployment


@pytest.fixture(scope="module")
def client(deployment, tokens):
    with CaseStoreClient(deployment.api, tokens["clin-a"]) as c:
        yield c


def test_attach_a_file_larger_than_the_widget_channel_allows(client, tmp_path) -> None:
    case = client.create_case("Attachments", "summary")
    widget = AttachmentsWidget(client, case.id)
    assert "No files yet" in widget.files.value
    report = tmp_path / "lab-results.pdf"
    data = os.urandom(1 << 20) * 20  # 20 MiB: over ipywidgets' ~10 MB message limit
    report.write_bytes(b"%PDF-1.4\n" + data)
    widget.path.value = str(report)
    widget.attach_button.click()  # uploads in a thread, as in a notebook
    widget.wait(timeout=120)
    assert widget.progress.value == widget.progress.max == report.stat().st_size
    assert "21.0 MB of 21.0 MB" in widget.progress_text.value
    assert "lab-results.pdf" in widget.files.value
    files = client.list_files(case.id)
    assert [(f.name, f.size, f.media_type) for f in files] == [
        ("lab-results.pdf", report.stat().st_size, "application/pdf")
    ]


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: str(p / "missing.pdf"), "no such file"),
        (lambda p: (p / "empty.pdf").write_bytes(b"") or str(p / "empty.pdf"), "empty"),
        (lambda p: "", "give the path"),
    ],
)
def test_refusals_are_shown_and_nothing_is_attached(client, tmp_path, make, why) -> None:
    case = client.create_case("Attachments refused", "summary")
    widget = AttachmentsWidget(client, case.id)
    widget.path.value = make(tmp_path)
    assert widget.attach() is None
    assert why in widget.problems.value
    assert client.list_files(case.id) == []


def test_files_attach_only_to_a_saved_case(client) -> None:
    widget = AttachmentsWidget(client)
    assert "Save the case first" in widget.files.value
    widget.path.value = "/etc/hostname"
    assert widget.attach() is None
    assert "save the case" in widget.problems.value
