"""``notebooks/02-whole-slide-images.ipynb`` runs against the real store as a clinician.

Executed with nbclient in a kernel of this virtualenv, with the variables a user server
has (``JUPYTERHUB_API_TOKEN`` of clin-a, ``CPMS_STORE_URL``) and ``CPMS_SLIDE_SAMPLE``
pointing at the sample Aperio slide. Checked: the import report names the label, the
macro and the identifying fields; the viewer cell shows a widget; the annotation made from
code is listed with its author.
"""

from __future__ import annotations

import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.deployment import REPO
from tests.integration.test_notebook import _tagged, _text
from tests.integration.test_slides_http import SAMPLE

pytestmark = pytest.mark.deployment

NOTEBOOK = REPO / "notebooks" / "02-whole-slide-images.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id


def test_slide_notebook_runs(deployment, monkeypatch, tmp_path) -> None:
    if not SAMPLE.exists():
        pytest.skip(f"sample slide not found at {SAMPLE}")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", deployment.token("clin-a"))
    monkeypatch.setenv("CPMS_STORE_URL", deployment.direct_api)
    monkeypatch.setenv("CPMS_SLIDE_SAMPLE", str(SAMPLE))
    copy = tmp_path / NOTEBOOK.name
    shutil.copyfile(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    report = _text(_tagged(nb, "report"))
    assert "label" in report and "macro" in report and "aperio.Filename" in report
    assert "images kept: thumbnail" in report and "2220 x 2967" in report
    viewer = _tagged(nb, "viewer")
    assert any(
        "application/vnd.jupyter.widget-view+json" in out.get("data", {}) for out in viewer.outputs
    ), viewer.outputs
    listed = _text(_tagged(nb, "annotations"))
    assert "clin-a: rectangle" in listed and "Dense infiltrate: please review" in listed
