"""The notebook widgets driven without a browser, against the real deployment.

``CaseForm`` and ``ConsentWidget`` are used the way a clinician's clicks use
them: values are set on the inner widgets, buttons are ``click()``-ed, and the
test reads what the widgets show. The store is the session's real one, as
``clin-a``. The notebook ``01-submit-a-case.ipynb`` is executed with nbclient
like a user server would run it. Every case here is invented.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime

import nbformat
import pytest
from nbclient import NotebookClient

from cpms_hub.domain import CaseStatus, ConsentScope
from cpms_widgets import CaseForm, CaseStoreClient, ConsentWidget
from tests.deployment import REPO
from tests.samples import tiny_pdf

pytestmark = pytest.mark.deployment

NOTEBOOK = REPO / "notebooks" / "01-submit-a-case.ipynb"
SEIZURE = "HP:0001250 Seizure"


@pytest.fixture(scope="module")
def client(deployment, tokens):
    with CaseStoreClient(deployment.api, tokens["clin-a"]) as c:
        yield c


def _options(select) -> list[str]:
    return [label for label, _ in select.options]


def _fill_patient(form: CaseForm, pseudonym: str) -> None:
    form.title.value = "Invented: girl, 3, seizures since 6 months"
    form.clinical_summary.value = "Invented example: febrile, then afebrile clonic seizures."
    form.pseudonym.value = pseudonym
    form.sex.value = "female"
    form.birth_year.value = "2021"
    form.country.value = "be"
    form.question.value = "Dravet syndrome? Which drugs should be avoided?"
    form.urgency.value = "urgent"


def _problem_fields(widget) -> set[str]:
    return {p.field for p in widget.last_problems}


def test_importing_the_client_does_not_load_ipywidgets():
    code = (
        "import sys, cpms_widgets;"
        "assert 'ipywidgets' not in sys.modules, 'ipywidgets imported';"
        "from cpms_widgets import CaseForm;"
        "assert 'ipywidgets' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


# -- the whole way through the widgets ---------------------------------------------------------


def test_case_form_from_search_to_submission(client, tmp_path):
    form = CaseForm(client)
    assert "not saved yet" in form.status.value

    # one letter asks nothing; two letters and more search HPO as one types
    form.hpo_query.value = "s"
    assert form.hpo_hits.options == ()
    start = time.perf_counter()
    form.hpo_query.value = "seiz"
    took = time.perf_counter() - start
    assert SEIZURE in _options(form.hpo_hits), _options(form.hpo_hits)
    assert took < 5, f"search took {took:.2f} s"

    # a synonym that matched is shown
    form.hpo_query.value = "epilep"
    synonym_hits = [o for o in _options(form.hpo_hits) if o.startswith(SEIZURE)]
    assert synonym_hits and "(synonym: " in synonym_hits[0], _options(form.hpo_hits)

    form.hpo_query.value = "seiz"
    form.hpo_hits.value = "HP:0001250"
    form.hpo_onset.value = "HP:0003593"
    form.add_hpo.click()
    assert [(p.hpo_id, p.label, p.onset) for p in form.model.phenotypes] == [
        ("HP:0001250", "Seizure", "HP:0003593")
    ]
    assert form.hpo_list.children[0].children[0].value.startswith(SEIZURE)

    # the same term twice is refused and said
    form.add_hpo.click()
    assert "already listed" in form.problems.value
    assert len(form.model.phenotypes) == 1

    # an excluded term, then removed with its button
    form.hpo_query.value = "microcephaly"
    form.hpo_hits.value = "HP:0000252"
    form.hpo_presence.value = "excluded"
    form.hpo_onset.value = ""
    form.add_hpo.click()
    assert form.model.phenotypes[1].excluded
    assert "excluded" in form.hpo_list.children[1].children[0].value
    form.hpo_list.children[1].remove_button.click()
    assert [p.hpo_id for p in form.model.phenotypes] == ["HP:0001250"]

    # a diagnosis from Orphanet
    form.dx_query.value = "dravet"
    assert any(o.startswith("ORPHA:33069 Dravet") for o in _options(form.dx_hits))
    form.dx_hits.value = "ORPHA:33069"
    form.add_dx.click()
    assert [(d.code, d.label) for d in form.model.diagnoses] == [("ORPHA:33069", "Dravet syndrome")]
    # and one from ICD-10
    form.dx_system.value = "ICD-10"
    form.dx_query.value = "G40"
    assert form.dx_hits.options, "no ICD-10 hit for G40"
    form.dx_hits.value = next(code for _, code in form.dx_hits.options if code.startswith("G40"))
    form.add_dx.click()
    assert form.model.diagnoses[1].system.value == "ICD-10"

    # a genetic finding; the HGVS description is checked as it is typed
    form.gene.value = "SCN1A"
    form.hgvs.value = "NM_001165963.4:c.2589+3A>T"
    assert "✔" in form.hgvs_check.value, form.hgvs_check.value
    form.zygosity.value = "heterozygous"
    form.classification.value = "pathogenic"
    form.add_finding.click()
    assert [(g.gene, g.hgvs) for g in form.model.genetics] == [
        ("SCN1A", "NM_001165963.4:c.2589+3A>T")
    ]

    # save: a draft exists in the store with what the form says
    pseudonym = f"WID-{uuid.uuid4().hex[:8].upper()}"
    _fill_patient(form, pseudonym)
    saved_ids: list[str] = []
    form.on_save(saved_ids.append)
    form.save_button.click()
    assert form.last_problems == [], form.problems.value
    case_id = form.model.case_id
    assert case_id and saved_ids == [case_id]
    assert "draft" in form.status.value and case_id in form.status.value
    stored = client.get_case(case_id)
    assert stored.status is CaseStatus.DRAFT
    assert stored.content.patient.pseudonym == pseudonym
    assert stored.content.patient.country == "BE"
    assert [p.hpo_id for p in stored.content.phenotypes] == ["HP:0001250"]
    assert [d.code for d in stored.content.diagnoses][0] == "ORPHA:33069"
    assert [c.id for c in client.find_by_pseudonym(pseudonym)] == [case_id]

    # submit without consent: the store's consent problem is shown, by field
    form.submit_button.click()
    assert "consent" in _problem_fields(form), form.problems.value
    assert "no consent recorded" in form.problems.value
    assert "draft" in form.status.value
    assert client.get_case(case_id).status is CaseStatus.DRAFT

    # consent with a generated PDF
    consent = ConsentWidget(client, case_id)
    assert any(line.startswith("Submission blocked") for line in consent.lines)
    assert "cpms-blocked" in consent.state_html.value
    pdf = tmp_path / "consent-signed.pdf"
    pdf.write_bytes(tiny_pdf())
    consent.scope_panel.value = True
    consent.scope_research.value = True
    consent.form_version.value = "ERN-consent-2024-v2"
    consent.language.value = "fr"
    consent.signed_on.value = date.today()
    consent.form_path.value = str(pdf)
    consent.record_button.click()
    assert consent.last_problems == [], consent.message.value
    assert consent.progress.value == consent.progress.max == pdf.stat().st_size
    assert "✔ Care and panel discussion (required to submit)" in consent.lines
    assert "✔ Being contacted for research" in consent.lines
    assert not any(line.startswith("Submission blocked") for line in consent.lines)
    assert "cpms-granted" in consent.state_html.value

    form.submit_button.click()
    assert form.last_problems == [], form.problems.value
    assert form.model.status == "submitted"
    assert "submitted" in form.status.value
    assert client.get_case(case_id).status is CaseStatus.SUBMITTED


# -- the parts, one by one ---------------------------------------------------------------------


def test_local_problems_are_listed_by_field_before_anything_is_sent(client):
    form = CaseForm(client)
    form.birth_year.value = "20x1"
    form.country.value = "France"
    form.pseudonym.value = "LOC-1"
    form.submit_button.click()
    fields = _problem_fields(form)
    assert {"title", "patient.birth_year", "phenotypes", "question"} <= fields, fields
    assert form.model.case_id is None  # nothing was created
    form.save_button.click()
    assert "title" in _problem_fields(form) and form.model.case_id is None


def test_store_refusals_are_shown_by_field(client):
    form = CaseForm(client)
    pseudonym = f"OBS-{uuid.uuid4().hex[:8].upper()}"
    _fill_patient(form, pseudonym)
    form.model.add_phenotype("HP:0000057", "Clitoromegaly")  # obsolete
    form.save_button.click()
    assert "phenotypes" in _problem_fields(form)
    assert "HP:0008665" in form.problems.value, form.problems.value  # its replacement
    # refused whole: no empty draft was left behind; fix and save again
    assert form.model.case_id is None
    assert client.find_by_pseudonym(pseudonym) == []
    form.remove_hpo("HP:0000057")
    form.hpo_query.value = "HP:0008665"
    assert form.hpo_hits.value == "HP:0008665", form.hpo_hits.options
    form.add_hpo.click()
    form.save_button.click()
    assert form.last_problems == [], form.problems.value
    assert [p.hpo_id for p in client.get_case(form.model.case_id).content.phenotypes] == [
        "HP:0008665"
    ]


def test_hgvs_is_checked_live_and_a_bad_one_is_not_added(client):
    form = CaseForm(client)
    form.gene.value = "SCN1A"
    form.hgvs.value = "SCN1A c.2589 A>T"
    assert "✘" in form.hgvs_check.value and "HGVS" in form.hgvs_check.value
    form.add_finding.click()
    assert form.model.genetics == [] and "genetics.hgvs" in _problem_fields(form)
    form.hgvs.value = "NM_000051.4:c.7630-2A>C"
    assert "✔" in form.hgvs_check.value
    form.gene.value = "atm!"
    form.add_finding.click()
    assert "genetics.gene" in _problem_fields(form) and form.model.genetics == []
    form.gene.value = "ATM"
    form.add_finding.click()
    assert [g.gene for g in form.model.genetics] == ["ATM"]
    assert form.hgvs.value == "" and form.hgvs_check.value == '<span class="cpms-note"></span>'


def test_a_saved_draft_is_loaded_back_into_the_form(client):
    form = CaseForm(client)
    pseudonym = f"RLD-{uuid.uuid4().hex[:8].upper()}"
    _fill_patient(form, pseudonym)
    form.hpo_query.value = "seiz"
    form.add_hpo.click()  # the first hit is chosen by default
    assert [p.hpo_id for p in form.model.phenotypes] == ["HP:0001250"]
    form.save_button.click()
    case_id = form.model.case_id
    assert case_id

    again = CaseForm(client, case_id)
    assert again.pseudonym.value == pseudonym
    assert again.birth_year.value == "2021" and again.country.value == "BE"
    assert again.title.value == form.title.value
    assert again.question.value == form.question.value
    assert again.urgency.value == "urgent"
    assert again.hpo_list.children[0].children[0].value.startswith(SEIZURE)
    assert "draft" in again.status.value
    again.question.value = "Dravet syndrome, or PCDH19?"
    again.save_button.click()
    assert client.get_case(case_id).content.question == "Dravet syndrome, or PCDH19?"


def test_consent_widget_upload_button_refusals_and_withdrawal(client, tmp_path):
    case = client.create_case("Invented: consent widget")
    consent = ConsentWidget(None)
    assert consent.record_button.disabled
    consent = ConsentWidget(client)
    assert "Save the case first" in consent.state_html.value
    consent.set_case(case.id)
    assert not consent.record_button.disabled
    assert "no consent recorded" in consent.state_html.value

    # nothing filled: every problem at once, nothing sent
    consent.record_button.click()
    fields = _problem_fields(consent)
    assert {"scopes", "form_version", "signed_on", "form"} <= fields, fields

    # a text file is refused before it is sent
    txt = tmp_path / "consent.txt"
    txt.write_text("invented\n")
    consent.scope_panel.value = True
    consent.form_version.value = "v1"
    consent.signed_on.value = date.today()
    consent.form_path.value = str(txt)
    consent.record_button.click()
    assert "form" in _problem_fields(consent) and "PDF" in consent.message.value
    assert client.list_files(case.id) == []

    # a small form picked with the upload button
    pdf = tiny_pdf()
    consent.form_path.value = ""
    consent.form_upload.value = (
        {
            "name": "signed-scan.pdf",
            "type": "application/pdf",
            "size": len(pdf),
            "content": memoryview(pdf),
            "last_modified": datetime.now(UTC),
        },
    )
    consent.record_button.click()
    assert consent.last_problems == [], consent.message.value
    assert consent.form_upload.value == ()
    files = client.list_files(case.id)
    assert [(f.name, f.media_type, f.size) for f in files] == [
        ("signed-scan.pdf", "application/pdf", len(pdf))
    ]
    assert consent.state["granted"] == ["panel-discussion"]

    # withdraw without a reason: refused by field; with one: shown as withdrawn
    consent.withdraw_scope.value = ConsentScope.PANEL_DISCUSSION.value
    consent.withdraw_button.click()
    assert "reason" in _problem_fields(consent), consent.message.value
    consent.withdraw_reason.value = "the patient asked (invented)"
    consent.withdraw_button.click()
    assert consent.last_problems == [], consent.message.value
    assert "✘ Care and panel discussion (required to submit) — withdrawn" in consent.lines
    assert any("panel-discussion is withdrawn" in line for line in consent.lines)
    assert "cpms-withdrawn" in consent.state_html.value
    # a scope never granted cannot be withdrawn
    consent.withdraw_scope.value = ConsentScope.REGISTRIES.value
    consent.withdraw_reason.value = "x"
    consent.withdraw_button.click()
    assert "scope" in _problem_fields(consent)


# -- the notebook ------------------------------------------------------------------------------


def _tagged(nb, tag: str):
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"one cell tagged {tag!r} expected"
    return cells[0]


def _text(cell) -> str:
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


def test_submit_notebook_is_stored_without_outputs():
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
            assert cell.metadata.get("tags"), f"code cell {cell.id} has no tag"


def test_submit_notebook_runs_and_shows_what_it_promises(deployment, monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", deployment.token("clin-a"))
    monkeypatch.setenv("CPMS_STORE_URL", deployment.direct_api)
    copy = tmp_path / NOTEBOOK.name
    shutil.copyfile(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    took = time.perf_counter() - start
    print(f"notebook ran in {took:.1f} s")

    assert "Connected as clin-a" in _text(_tagged(nb, "connect"))
    for tag in ("case-form", "consent-widget"):
        data = _tagged(nb, tag).outputs[0]["data"]
        assert "application/vnd.jupyter.widget-view+json" in data, data.keys()

    failing = _text(_tagged(nb, "failing-submit"))
    assert "Submission refused" in failing, failing
    for field in ("patient:", "phenotypes:", "question:", "consent:"):
        assert f"  - {field}" in failing, failing

    content = _text(_tagged(nb, "plain-content"))
    assert "local problems: none" in content and "HP:0000252 Microcephaly (excluded)" in content
    upload = _text(_tagged(nb, "plain-upload"))
    assert "(100%)" in upload and "Attached consent-signed.pdf (application/pdf" in upload
    consent = _text(_tagged(nb, "plain-consent"))
    assert "✔ Care and panel discussion" in consent and "Submission blocked" not in consent
    assert "is now submitted" in _text(_tagged(nb, "plain-submit"))
    listing = _text(_tagged(nb, "list"))
    assert "submitted" in listing and "You can see" in listing
