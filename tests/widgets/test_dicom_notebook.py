"""``notebooks/02-dicom-images.ipynb`` runs against the real store, as a user server runs it.

A new clinician with one case holding a small synthetic CT series executes the notebook
with nbclient (their own token in the kernel's environment, as the hub gives it): it finds
the case with images, shows the import widget and the viewer, and no cell fails.
"""

from __future__ import annotations

import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from cpms_widgets import CaseStoreClient
from tests.data_gen import ct_series
from tests.deployment import REPO

pytestmark = pytest.mark.deployment

NOTEBOOK = REPO / "notebooks" / "02-dicom-images.ipynb"
WIDGET = "application/vnd.jupyter.widget-view+json"


def _tagged(nb, tag: str):  # noqa: ANN001, ANN202
    return next(c for c in nb.cells if tag in c.metadata.get("tags", []))


def test_the_committed_notebook_is_clean() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id


def test_dicom_notebook_shows_the_importer_and_the_viewer(deployment, monkeypatch, tmp_path):
    acc = deployment.add_account("dicom-nb", ("clinician",))
    token = deployment.token(acc.name)
    with CaseStoreClient(deployment.api, token) as client:
        case = client.create_case("notebook images", "imaging")
        client.import_dicom(case.id, ct_series(tmp_path / "ct", slices=3, size=32)[0].parent)
        uid = client.list_studies(case.id)[0]["series"][0]["series_uid"]
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
    monkeypatch.setenv("CPMS_STORE_URL", deployment.direct_api)
    copy = tmp_path / NOTEBOOK.name
    shutil.copyfile(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    NotebookClient(
        nb, timeout=90, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    assert case.id in _tagged(nb, "choose").outputs[0]["data"]["text/plain"]
    for tag in ("import", "view"):
        data = _tagged(nb, tag).outputs[0]["data"]
        assert WIDGET in data, (tag, data.keys())
    assert uid in _tagged(nb, "view").outputs[0]["data"]["text/plain"]
