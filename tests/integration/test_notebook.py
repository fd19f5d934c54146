"""``notebooks/00-getting-started.ipynb`` runs against the real store and shows what it promises.

The notebook is executed with nbclient in a kernel of this virtualenv
(``python3``), which inherits the test process's environment: the test sets
the variables a user server would have (``JUPYTERHUB_API_TOKEN`` of ``clin-a``
and ``CPMS_STORE_URL``, the store without the proxy) plus
``CPMS_DEMO_OTHER_TOKEN`` of ``clin-b``, a clinician at another hospital.
Code cells are found by their tags.
"""

from __future__ import annotations

import re
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.deployment import REPO

pytestmark = pytest.mark.deployment

NOTEBOOK = REPO / "notebooks" / "00-getting-started.ipynb"
CELL_TIMEOUT = 60


def _text(cell) -> str:
    """Everything a code cell printed or displayed, as text (plain and HTML)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            data = out.get("data", {})
            parts.extend(str(data.get(k, "")) for k in ("text/plain", "text/html"))
        elif out.get("output_type") == "error":
            parts.append("\n".join(out.get("traceback", [])))
    return "\n".join(parts)


def _tagged(nb, tag: str):
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"one cell tagged {tag!r} expected"
    return cells[0]


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"] == {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id


@pytest.fixture
def executed(deployment, monkeypatch, tmp_path):
    """The notebook after a run as clin-a, from a copy in a temporary folder."""
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", deployment.token("clin-a"))
    monkeypatch.setenv("CPMS_STORE_URL", deployment.direct_api)
    monkeypatch.setenv("CPMS_DEMO_OTHER_TOKEN", deployment.token("clin-b"))
    copy = tmp_path / NOTEBOOK.name
    shutil.copyfile(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    return nb


def test_getting_started_runs_and_shows_what_it_promises(executed) -> None:
    nb = executed
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not any(o.get("output_type") == "error" for o in cell.outputs), cell.id

    me = _text(_tagged(nb, "connect"))
    assert "clin-a" in me and "Hospital A" in me

    created = _text(_tagged(nb, "create"))
    match = re.search(r"Created case (\S+)", created)
    assert match, created
    case_id = match.group(1)
    assert "draft" in created

    listing = _text(_tagged(nb, "list"))
    assert case_id in listing and "the new one is listed: True" in listing, listing

    read = _text(_tagged(nb, "read"))
    assert "recurrent fevers" in read and "PFAPA" in read

    assert "colchicine started" in _text(_tagged(nb, "update"))

    files = _text(_tagged(nb, "files"))
    assert "Uploaded synthetic-report.txt" in files, files
    assert "- synthetic-report.txt (text/plain" in files, files

    lookup = _text(_tagged(nb, "lookup"))
    assert case_id in lookup and "found the new case: True" in lookup

    other = _text(_tagged(nb, "other-hospital"))
    assert "clin-b (Hospital B)" in other, other
    assert "Refused with HTTP 403" in other, other
    reasons = [line for line in other.splitlines() if line.startswith("  - ")]
    assert reasons, other

    invalid = _text(_tagged(nb, "validation"))
    assert "Refused: field 'title'" in invalid, invalid
    assert "  - title:" in invalid, invalid


def test_other_hospital_demonstration_is_skipped_without_its_token(
    deployment, monkeypatch, tmp_path
) -> None:
    """Without CPMS_DEMO_OTHER_TOKEN (a real user server) the notebook still runs through."""
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", deployment.token("clin-a"))
    monkeypatch.setenv("CPMS_STORE_URL", deployment.direct_api)
    monkeypatch.delenv("CPMS_DEMO_OTHER_TOKEN", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    assert "skipping the other-hospital demonstration" in _text(_tagged(nb, "other-hospital"))
