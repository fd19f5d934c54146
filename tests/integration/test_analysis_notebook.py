"""``notebooks/03-analyse-anonymised-cases.ipynb`` runs as a data scientist against the store.

The notebook is executed with nbclient in a kernel of this virtualenv, with
the variables a user server of ``sci-d`` would have (its token and the
store's address). Consenting cases are seeded first through the API.
"""

from __future__ import annotations

import re
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.deployment import REPO
from tests.integration.analysis_seed import seed_cases
from tests.integration.test_notebook import _tagged, _text

pytestmark = pytest.mark.deployment

NOTEBOOK = REPO / "notebooks" / "03-analyse-anonymised-cases.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id


@pytest.fixture
def executed(deployment, tokens, monkeypatch, tmp_path):
    seeded = seed_cases(deployment, tokens["clin-a"], 10, tag="NB")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", tokens["sci-d"])
    monkeypatch.setenv("CPMS_STORE_URL", deployment.direct_api)
    monkeypatch.setenv("MPLBACKEND", "agg")
    copy = tmp_path / NOTEBOOK.name
    shutil.copyfile(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    return nb, seeded


def test_the_data_scientist_notebook_shows_only_anonymised_data(executed) -> None:
    nb, seeded = executed
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not any(o.get("output_type") == "error" for o in cell.outputs), cell.id
    assert "Signed in as sci-d (data-scientist)" in _text(_tagged(nb, "connect"))

    cohort = _text(_tagged(nb, "cohort"))
    m = re.search(r"(\d+) of (\d+) consenting cases exported, (\d+) suppressed", cohort)
    assert m and int(m.group(2)) >= 10, cohort
    assert "age_band          generalised to:" in cohort
    assert "(k = 5)" in _text(_tagged(nb, "check"))
    assert "wrote cohort.parquet" in _text(_tagged(nb, "parquet"))

    refused = _text(_tagged(nb, "refused"))
    assert "k: must be at least 2" in refused
    assert "unknown column 'date_of_birth'" in refused
    assert "cannot reach k=500" in refused

    assert "consenting cases" in _text(_tagged(nb, "report"))
    assert "plotted 2 charts" in _text(_tagged(nb, "plot"))
    # the seeded outcomes are signed but not followed up yet: counted as pending
    timing = _text(_tagged(nb, "timing"))
    assert "result at follow-up" in timing and "pending" in timing
    assert "plotted outcomes by treatment" in _text(_tagged(nb, "outcomes"))
    assert "mode: anonymised" in _text(_tagged(nb, "similar"))
    denied = _text(_tagged(nb, "denied"))
    assert "Refused with HTTP 403" in denied and "lacks scope custom:cpms:cases:read" in denied

    # nothing that points back at a record appears anywhere in the outputs
    everything = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    for s in seeded:
        assert s.id not in everything and s.pseudonym not in everything
