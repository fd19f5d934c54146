"""The case form in a real JupyterLab: log in, open the notebook, fill, save, consent, submit.

A dedicated clinician logs in through the real hub (password and TOTP code),
lands in their own JupyterLab (a demo-mode user server started by the hub),
opens ``notebooks/01-submit-a-case.ipynb`` (copied into their server's folder
at first spawn), runs it, and then uses the rendered widgets as a clinician
would: fills the patient, types "seiz" into the HPO search and picks
*Seizure*, saves the draft, records consent with a PDF picked through the
upload button and submits. The widgets are found by their ``cpms-…`` classes.
Screenshots of each step go to the test's ``tmp_path``.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import date
from pathlib import Path

import httpx
import pytest

from tests.integration.test_accounts_browser import (
    LAB_TIMEOUT_MS,
    _login,
    _stop_server,
    _unique,
    _wait_for_lab,
)
from tests.jupyterlab import run_all
from tests.samples import tiny_pdf

pytestmark = [pytest.mark.deployment, pytest.mark.browser]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

NOTEBOOK = "notebooks/01-submit-a-case.ipynb"
#: the kernel starts in ~10 s; the first cell then connects to the store
KERNEL_TIMEOUT_MS = 90_000


def _lab_settings(page, deployment, name: str, plugin: str, settings: dict) -> None:
    """Write one JupyterLab settings plugin of the user, through their server's REST API."""
    lab = f"{deployment.url}/user/{name}/lab"
    xsrf = next((c["value"] for c in page.context.cookies(lab) if c["name"] == "_xsrf"), "")
    resp = page.request.put(
        f"{lab}/api/settings/{plugin}",
        data=json.dumps({"raw": json.dumps(settings)}),
        headers={"X-XSRFToken": xsrf, "Content-Type": "application/json"},
    )
    assert resp.ok, (plugin, resp.status, resp.text())


def _step(page, tmp_path: Path, name: str, timings: dict, start: float) -> None:
    timings[name] = round(time.monotonic() - start, 1)
    page.screenshot(path=str(tmp_path / f"{len(timings):02d}-{name}.png"), full_page=False)


def test_clinician_fills_saves_consents_and_submits_in_jupyterlab(deployment, page, tmp_path):
    acc = deployment.add_account(_unique("formdoc"), ("clinician",), hospital="Hospital A")
    name = acc.name
    timings: dict[str, float] = {}
    start = time.monotonic()
    pseudonym = f"BRW-{uuid.uuid4().hex[:8].upper()}"
    try:
        # -- log in through the hub and land in JupyterLab ------------------------------
        _login(page, deployment, name, acc.password, acc.code(), next_url=None)
        _wait_for_lab(page, deployment, name)
        expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=LAB_TIMEOUT_MS)
        # no "Jupyter news?" toast over the widgets; every cell rendered, even off-screen
        _lab_settings(
            page,
            deployment,
            name,
            "@jupyterlab/apputils-extension:notification",
            {"fetchNews": "false", "checkForUpdates": False},
        )
        _lab_settings(
            page,
            deployment,
            name,
            "@jupyterlab/notebook-extension:tracker",
            {"windowingMode": "none"},
        )
        _step(page, tmp_path, "lab", timings, start)

        # -- open the notebook and run it ----------------------------------------------
        page.goto(f"{deployment.url}/user/{name}/lab/tree/{NOTEBOOK}")
        notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
        expect(notebook).to_be_visible(timeout=LAB_TIMEOUT_MS)
        run_all(
            page, deployment, name, NOTEBOOK, page.locator(".cpms-case-form"), KERNEL_TIMEOUT_MS
        )
        form = page.locator(".cpms-case-form")
        expect(form).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
        consent = page.locator(".cpms-consent")
        expect(consent).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
        expect(consent.locator(".cpms-consent-state")).to_contain_text("Save the case first")
        # the last cell ran too: the notebook goes through without an error
        expect(page.locator(".jp-OutputArea-output[data-mime-type*='error']")).to_have_count(0)
        _step(page, tmp_path, "notebook-ran", timings, start)

        # -- fill the form -------------------------------------------------------------
        form.locator(".cpms-title input").fill("Invented: girl, 3, seizures since 6 months")
        form.locator(".cpms-pseudonym input").fill(pseudonym)
        form.locator(".cpms-sex select").select_option("female")
        form.locator(".cpms-birth-year input").fill("2021")
        form.locator(".cpms-country input").fill("BE")

        form.locator(".cpms-hpo-query input").press_sequentially("seiz", delay=80)
        hits = form.locator(".cpms-hpo-hits select")
        expect(hits.locator("option", has_text="HP:0001250 Seizure").first).to_be_attached()
        hits.select_option(label="HP:0001250 Seizure")
        form.locator(".cpms-hpo-onset select").select_option(label="Infantile onset (HP:0003593)")
        _step(page, tmp_path, "hpo-search", timings, start)
        form.locator(".cpms-add-hpo").click()
        expect(form.locator(".cpms-hpo-row")).to_have_count(1)
        expect(form.locator(".cpms-hpo-row")).to_contain_text("HP:0001250 Seizure")

        form.locator(".cpms-gene input").fill("SCN1A")
        form.locator(".cpms-hgvs input").press_sequentially("NM_001165963.4:c.2589+3A>T")
        expect(form.locator(".cpms-hgvs-check")).to_contain_text("✔")
        form.locator(".cpms-acmg select").select_option("pathogenic")
        form.locator(".cpms-add-finding").click()
        expect(form.locator(".cpms-finding-row")).to_contain_text("SCN1A")

        form.locator(".cpms-summary textarea").fill(
            "Invented example: febrile, then afebrile clonic seizures."
        )
        form.locator(".cpms-question textarea").fill("Dravet syndrome? Which drugs to avoid?")

        # -- save the draft --------------------------------------------------------------
        form.locator(".cpms-save").click()
        status = form.locator(".cpms-status")
        expect(status.locator("[data-status='draft']")).to_have_text("draft")
        expect(form.locator(".cpms-problems")).to_contain_text("Draft saved")
        _step(page, tmp_path, "draft-saved", timings, start)

        # the store has the draft, as this user
        token = deployment.token(name)
        headers = {"Authorization": f"token {token}"}
        with httpx.Client(base_url=deployment.api, headers=headers, trust_env=False) as api:
            found = api.post("/cases/lookup", json={"pseudonym": pseudonym}).json()
            assert [c["status"] for c in found] == ["draft"], found
            case = found[0]
            assert [p["hpo_id"] for p in case["content"]["phenotypes"]] == ["HP:0001250"]

        # submitting now is refused: consent is missing, and the form says so
        form.locator(".cpms-submit").click()
        expect(form.locator(".cpms-problems")).to_contain_text("no consent recorded")
        expect(status.locator("[data-status='draft']")).to_have_text("draft")

        # -- record consent in the consent widget (it follows the saved case) -------------
        state = consent.locator(".cpms-consent-state")
        expect(state).to_contain_text("Submission blocked")
        consent.locator(".cpms-scope-panel-discussion input").check()
        consent.locator(".cpms-form-version input").fill("ERN-consent-2024-v2")
        consent.locator(".cpms-language input").fill("fr")
        consent.locator(".cpms-signed-on input").fill(date.today().isoformat())
        pdf = tmp_path / "signed-consent.pdf"
        pdf.write_bytes(tiny_pdf())
        with page.expect_file_chooser() as chooser:
            consent.locator(".cpms-form-upload").click()
        chooser.value.set_files(str(pdf))
        expect(consent.locator(".cpms-form-upload")).to_contain_text("(1)")
        consent.locator(".cpms-record-consent").click()
        expect(consent.locator(".cpms-consent-problems")).to_contain_text("Consent recorded")
        expect(state).to_contain_text("✔ Care and panel discussion")
        expect(state).not_to_contain_text("Submission blocked")
        _step(page, tmp_path, "consent-recorded", timings, start)

        # -- submit ------------------------------------------------------------------------
        form.locator(".cpms-submit").click()
        expect(status.locator("[data-status='submitted']")).to_have_text("submitted")
        expect(form.locator(".cpms-problems")).to_contain_text("Submitted")
        form.locator(".cpms-status").scroll_into_view_if_needed()
        _step(page, tmp_path, "submitted", timings, start)

        with httpx.Client(base_url=deployment.api, headers=headers, trust_env=False) as api:
            now = api.get(f"/cases/{case['id']}").json()
            assert now["status"] == "submitted", now
            assert now["consent"]["granted"] == ["panel-discussion"], now
            files = api.get(f"/cases/{case['id']}/files").json()
            assert [(f["name"], f["media_type"]) for f in files] == [
                ("signed-consent.pdf", "application/pdf")
            ]
        print(f"timings (s since start): {timings}; screenshots in {tmp_path}")
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        _stop_server(deployment, name)
