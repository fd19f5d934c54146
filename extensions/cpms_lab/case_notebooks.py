"""Notebooks the case desk writes for the user: a new case, or one bound to a case.

"New case" starts from the submission template that ships in this package
(``templates/01-submit-a-case.ipynb``, the same notebook as
``notebooks/01-submit-a-case.ipynb``), keeps its guided part (form, consent,
attachments) and leaves out its worked examples, which create invented cases
each time they run. A notebook bound to a case names the case by its random
id only — never its title or anything about the patient, because the file
sits unencrypted in the user's folder — and fetches the rest as the user at
run time. Both open with a first cell that connects the client with this
server's own token, which never appears in a cell.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import nbformat
from nbformat.corpus.words import generate_corpus_id
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

__all__ = [
    "CASES_FOLDER",
    "REQUESTS_HEADING",
    "connect_cell",
    "new_case_notebook",
    "case_notebook",
    "template",
]

#: where the desk puts the notebooks it writes, relative to the server's root folder
CASES_FOLDER = "cases"

TEMPLATE = "01-submit-a-case.ipynb"

#: the template's worked examples start at this heading; the new-case notebook stops before it
_EXAMPLES_HEADING = "## 3."

_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

CONNECT_SOURCE = """\
# connect to the case store as you: this server's own token, never written in a cell
from cpms_widgets import CaseStoreClient

client = CaseStoreClient.from_env()
me = client.me()
print(f"Connected to the case store as {me['name']} ({', '.join(me['roles'])})")"""


#: where a "request for more information" notification leads: the owner answers here
REQUESTS_HEADING = (
    "## Requests from the panel\n\n"
    "The panel's questions to you about this case. Answer one with "
    '`client.answer_information_request(CASE_ID, request_id, "your answer")`.'
)

REQUESTS_SOURCE = """\
requests = client.information_requests(CASE_ID)
for r in requests:
    print(f"{r.id} asked by {r.asked_by}: {r.question}")
    print(f"    answered by {r.answered_by}: {r.answer}" if r.answer else "    not answered yet")
if not requests:
    print("No requests from the panel.")"""


def template() -> Any:
    """The submission template shipped in this package (a v4 notebook node)."""
    text = (files("cpms_lab") / "templates" / TEMPLATE).read_text(encoding="utf-8")
    return nbformat.reads(text, as_version=4)


def connect_cell() -> Any:
    return new_code_cell(CONNECT_SOURCE, metadata={"tags": ["cpms-connect"]})


def _notebook(cells: list[Any]) -> dict[str, Any]:
    nb = new_notebook(cells=cells, metadata={"kernelspec": _KERNELSPEC})
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    return nb


def new_case_notebook() -> dict[str, Any]:
    """The guided submission: the template's form, consent and attachments, connected first."""
    tpl = template()
    cells = [connect_cell()]
    for cell in tpl.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith(_EXAMPLES_HEADING):
            break
        cell["id"] = generate_corpus_id()  # a copy is a new cell
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    return _notebook(cells)


def case_notebook(case_id: str, slide_ids: list[str]) -> dict[str, Any]:
    """A notebook bound to one case: id, client, files, a viewer per slide, panel requests."""
    literal = json.dumps(case_id)  # a Python string literal of the id, whatever it holds
    cells = [
        new_markdown_cell(
            f"# Case `{case_id}`\n\n"
            "This notebook is bound to one case of the case store. The cells fetch it as you; "
            "nothing about the patient is written in this file."
        ),
        new_code_cell(
            CONNECT_SOURCE + f"\n\nCASE_ID = {literal}\ncase = client.get_case(CASE_ID)\n"
            'print(f"{case.title}: {case.status.value}, {case.network}")',
            metadata={"tags": ["cpms-connect"]},
        ),
        new_markdown_cell("## Files\n\nReports, consent forms and images attached to the case."),
        new_code_cell(
            "files = client.list_files(CASE_ID)\n[(f.name, f.media_type, f.size) for f in files]"
        ),
        new_markdown_cell(
            "## Images\n\n"
            + (
                f"{len(slide_ids)} whole-slide image(s), one viewer each "
                "(tiles come from the store with a short-lived grant)."
                if slide_ids
                else "No whole-slide images yet: "
                "`client.import_slide(CASE_ID, 'slide.svs')` adds one."
            )
        ),
        new_code_cell("slides = client.list_slides(CASE_ID)\n[s['id'] for s in slides]"),
    ]
    if slide_ids:
        cells.append(new_code_cell("from cpms_widgets.viewers import SlideViewer"))
    for slide_id in slide_ids:
        cells.append(new_code_cell(f"SlideViewer(client, CASE_ID, {json.dumps(slide_id)})"))
    cells += [new_markdown_cell(REQUESTS_HEADING), new_code_cell(REQUESTS_SOURCE)]
    return _notebook(cells)
