"""The case desk in a real JupyterLab behind the real hub, driven in Chromium.

A dedicated clinician with two invented cases logs in (password and TOTP),
lands in JupyterLab and opens the "Cases" sidebar: it lists their cases —
and not another hospital's — with network, status and consent, filters them,
shows that their (real, empty) inbox has no notifications, opens a case as a
notebook bound to it, and "New case" opens a notebook from the submission
template whose first cell connects the client; after a cell runs the list is
fetched again. The same sidebar then follows the dark theme. In Notebook 7
the desk is a tab of the file page, opens a case and follows the dark theme too.

Notifications are real ones: a coordinator assembles a panel on another
clinician's case, the panel accepts and asks for more information, and later
signs the outcome (all through the store's API, see
:mod:`tests.review_cases`). In JupyterLab the request opens the case's
notebook, which shows the question when run; the signed outcome opens its PDF
in a JupyterLab tab (the bytes the tab shows are a PDF, fetched through the
server extension); the case's *Review* button opens the review app's
workspace of that case in a browser tab of its own.
Screenshots go to the test's ``tmp_path``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.test_accounts_browser import LAB_TIMEOUT_MS, _stop_server, _unique
from tests.jupyterlab import lab_settings, open_lab, run_all
from tests.review_cases import QUESTION, panel_on_case, sign_outcome

pytestmark = [pytest.mark.deployment, pytest.mark.browser]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

KERNEL_TIMEOUT_MS = 90_000


def _case(deployment, token: str, title: str) -> dict:
    with httpx.Client(
        base_url=deployment.api, headers={"Authorization": f"token {token}"}, trust_env=False
    ) as api:
        resp = api.post("/cases", json={"title": title, "clinical_summary": "Invented."})
        assert resp.status_code == 201, resp.text
        return resp.json()


def _rgb(page, selector: str, prop: str = "backgroundColor") -> tuple[int, ...]:
    colour = page.locator(selector).first.evaluate(f"el => getComputedStyle(el).{prop}")
    return tuple(int(float(p)) for p in colour[colour.index("(") + 1 : -1].split(",")[:3])


def _open_desk(page):  # noqa: ANN202
    """Show the desk by its side-bar tab (JupyterLab may be restoring it open meanwhile)."""
    tab = page.locator(".jp-SideBar [data-id='cpms-case-desk']")
    expect(tab).to_be_visible(timeout=LAB_TIMEOUT_MS)
    desk = page.locator("#cpms-case-desk")
    for _ in range(5):
        if desk.is_visible():
            page.wait_for_timeout(1000)  # and it stays open: no restore closes it again
            if desk.is_visible():
                break
        tab.click()
        page.wait_for_timeout(1000)
    expect(desk).to_be_visible()
    expect(desk).to_have_attribute("data-loaded", "true", timeout=LAB_TIMEOUT_MS)
    return desk


def test_sidebar_lists_cases_opens_them_and_new_case_connects(deployment, page, tokens, tmp_path):
    acc = deployment.add_account(_unique("deskdoc"), ("clinician",), hospital="Hospital A")
    name = acc.name
    token = deployment.token(name)
    tag = uuid.uuid4().hex[:6]
    ataxia = _case(deployment, token, f"Invented {tag}: boy, 6, ataxia")
    _case(deployment, token, f"Invented {tag}: girl, 3, seizures")
    theirs = _case(deployment, tokens["clin-b"], f"Invented {tag}: another hospital")
    shot = 0

    def step(label: str) -> None:
        nonlocal shot
        shot += 1
        page.screenshot(path=str(tmp_path / f"{shot:02d}-{label}.png"))

    try:
        open_lab(page, deployment, acc)

        # -- the sidebar lists this user's cases, and only theirs ---------------------------
        desk = _open_desk(page)
        items = desk.locator(".cpms-case-item")
        expect(items.filter(has_text=tag)).to_have_count(2)
        expect(desk.locator(f"[data-case-id='{theirs['id']}']")).to_have_count(0)
        row = desk.locator(f".cpms-case-item[data-case-id='{ataxia['id']}']")
        expect(row.locator(".cpms-case-title")).to_have_text(ataxia["title"])
        expect(row.locator(".cpms-case-network")).to_have_text("ERN-TEST")
        expect(row.locator(".cpms-case-status")).to_have_text("draft")
        expect(row.locator(".cpms-case-consent")).to_have_text("no consent yet")
        # nobody asked this clinician anything yet: their real inbox is empty, none invented
        expect(desk.locator(".cpms-notifications-empty")).to_be_visible()
        expect(desk.locator(".cpms-notification")).to_have_count(0)
        step("sidebar")

        # -- filters ----------------------------------------------------------------------
        desk.locator(".cpms-filter-text").fill("ataxia")
        expect(items.filter(has_text=tag)).to_have_count(1)
        desk.locator(".cpms-filter-text").fill("no such title")
        expect(desk.locator(".cpms-case-none")).to_have_text("No case matches the filters.")
        desk.locator(".cpms-filter-text").fill("")
        # status and network offer what the cases have
        desk.locator(".cpms-filter-status").select_option("draft")
        desk.locator(".cpms-filter-network").select_option("ERN-TEST")
        expect(items.filter(has_text=tag)).to_have_count(2)

        # -- the context menu of a case -------------------------------------------------------
        row.click(button="right")
        menu = page.locator(".lm-Menu")
        for label in ("Open case in notebook", "Open in review app", "Open outcome (PDF)"):
            expect(menu.locator(".lm-Menu-itemLabel", has_text=label)).to_be_visible()
        page.keyboard.press("Escape")

        # -- no outcome yet: the desk says so (the store's 404), no empty PDF tab ------------
        row.locator(".cpms-case-outcome").click()
        dialog = page.locator(".jp-Dialog", has_text="No outcome to show")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("not found")  # the store's own words
        dialog.get_by_role("button", name="Close").click()
        expect(page.locator(".lm-TabBar-tab", has_text="Outcome")).to_have_count(0)

        # -- the review app opens in a browser tab of its own, for this case ---------------
        # (the workspace itself is checked in the notifications test below)
        with page.context.expect_page() as review:
            row.locator(".cpms-case-review").click()
        review.value.wait_for_load_state("commit")
        assert f"/services/cpms-review/?case={ataxia['id']}" in review.value.url
        review.value.close()

        # -- Refresh: a case made elsewhere appears without a reload ------------------------
        later = _case(deployment, token, f"Invented {tag}: added while open")
        desk.locator(".cpms-refresh").click()
        expect(desk.locator(f"[data-case-id='{later['id']}']")).to_be_visible()

        # -- open a case in a notebook bound to it ------------------------------------------
        row.locator(".cpms-case-notebook").click()
        bound = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
        expect(bound).to_contain_text(f'CASE_ID = "{ataxia["id"]}"', timeout=LAB_TIMEOUT_MS)
        expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(
            f"case-{ataxia['id']}.ipynb"
        )
        step("case-notebook")

        # -- New case: the template, connected ----------------------------------------------
        desk.locator(".cpms-new-case").click()
        nb = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
        expect(nb).to_contain_text("Submit a case", timeout=LAB_TIMEOUT_MS)
        expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(
            "new-case-1.ipynb"
        )
        connected = page.locator(".jp-OutputArea-output", has_text="Connected to the case store")
        run_all(page, deployment, name, "cases/new-case-1.ipynb", connected, KERNEL_TIMEOUT_MS)
        expect(connected).to_contain_text(f"Connected to the case store as {name} (clinician)")
        expect(page.locator(".cpms-case-form")).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
        expect(page.locator(".jp-OutputArea-output[data-mime-type*='error']")).to_have_count(0)
        step("new-case")

        # -- a cell that ran may have changed a case: the desk looks again by itself -------
        after_run = _case(deployment, token, f"Invented {tag}: made by a script")
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").first.click()
        page.keyboard.press("Shift+Enter")
        expect(desk.locator(f"[data-case-id='{after_run['id']}']")).to_be_visible()

        # -- the dark theme: the desk takes JupyterLab's colours ----------------------------
        light = _rgb(page, "#cpms-case-desk")
        lab_settings(
            page,
            deployment,
            name,
            "@jupyterlab/apputils-extension:themes",
            {"theme": "JupyterLab Dark"},
        )
        page.reload()
        desk = _open_desk(page)
        expect(desk.locator(".cpms-case-item").filter(has_text=tag)).to_have_count(4)
        dark = _rgb(page, "#cpms-case-desk")
        assert sum(dark) < sum(light) and sum(dark) < 3 * 100, (light, dark)
        step("dark")
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        print(f"screenshots in {Path(tmp_path)}")
        _stop_server(deployment, name)


def test_notebook_7_tree_has_a_cases_tab_that_opens_a_case(deployment, page, tmp_path):
    acc = deployment.add_account(_unique("desknb"), ("clinician",), hospital="Hospital A")
    name = acc.name
    case = _case(deployment, deployment.token(name), "Invented: Notebook 7 case")
    try:
        open_lab(page, deployment, acc)
        page.goto(f"{deployment.url}/user/{name}/tree")
        # Notebook 7's file page has no side bar: the desk is a tab beside Files and Running
        page.locator(".jp-TreePanel .lm-TabBar-tab", has_text="Cases").click()
        desk = page.locator("#cpms-case-desk")
        expect(desk).to_be_visible(timeout=LAB_TIMEOUT_MS)
        row = desk.locator(f".cpms-case-item[data-case-id='{case['id']}']")
        expect(row.locator(".cpms-case-title")).to_have_text(case["title"])
        page.screenshot(path=str(tmp_path / "notebook7-tree.png"))
        # Notebook 7 opens documents in a page of their own
        with page.context.expect_page() as opened:
            row.locator(".cpms-case-notebook").click()
        nb_page = opened.value
        nb_page.wait_for_load_state("domcontentloaded")
        assert f"/user/{name}/notebooks/cases/case-{case['id']}.ipynb" in nb_page.url
        expect(nb_page.locator(".jp-Notebook")).to_contain_text(
            f'CASE_ID = "{case["id"]}"', timeout=LAB_TIMEOUT_MS
        )
        nb_page.screenshot(path=str(tmp_path / "notebook7-case.png"))
        nb_page.close()

        # the dark theme (Notebook 7 shares JupyterLab's settings): the desk follows it
        light = _rgb(page, "#cpms-case-desk")
        lab_settings(
            page,
            deployment,
            name,
            "@jupyterlab/apputils-extension:themes",
            {"theme": "JupyterLab Dark"},
        )
        page.reload()
        page.locator(".jp-TreePanel .lm-TabBar-tab", has_text="Cases").click()
        expect(row.locator(".cpms-case-title")).to_have_text(case["title"])
        dark = _rgb(page, "#cpms-case-desk")
        assert sum(dark) < sum(light) and sum(dark) < 3 * 100, (light, dark)
        # and its text and buttons are light on it
        for selector in (".cpms-case-title", ".cpms-case-notebook", ".cpms-case-review"):
            text = _rgb(page, f"#cpms-case-desk {selector}", "color")
            assert sum(text) > sum(dark) + 3 * 100, (selector, text, dark)
        page.screenshot(path=str(tmp_path / "notebook7-dark.png"))
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        _stop_server(deployment, name)


def _pdf_in_frame(page) -> dict:  # noqa: ANN001
    """What the Outcome tab's frame shows: its address's scheme, and the bytes behind it."""
    frame = page.locator(".cpms-outcome-pdf iframe")
    expect(frame).to_be_visible()
    return frame.evaluate(
        """async el => {
            const blob = await (await fetch(el.src)).blob();
            const head = new Uint8Array(await blob.slice(0, 5).arrayBuffer());
            return {scheme: new URL(el.src).protocol, type: blob.type, size: blob.size,
                    head: String.fromCharCode(...head)};
        }"""
    )


def test_notifications_open_the_case_notebook_the_outcome_and_the_review_app(
    deployment, page, tmp_path
):
    acc = deployment.add_account(_unique("desknote"), ("clinician",), hospital="Hospital A")
    name = acc.name
    title = f"Invented {uuid.uuid4().hex[:6]}: girl, 5, seizures"
    # a panel on the clinician's case, which asks them for more information
    reviewed = panel_on_case(deployment, deployment.token(name), title)
    case_id = reviewed.case_id
    urls: list[str] = []
    page.on("request", lambda req: urls.append(req.url))
    try:
        open_lab(page, deployment, acc)
        desk = _open_desk(page)
        row = desk.locator(f".cpms-case-item[data-case-id='{case_id}']")
        expect(row.locator(".cpms-case-status")).to_have_text("panel-assembled")
        expect(row.locator(".cpms-case-deadline")).to_contain_text("panel by ")

        # -- the request for more information: unread, named by its case's title ------------
        asked = desk.locator(f".cpms-notification-information-request[data-case-id='{case_id}']")
        expect(asked).to_have_count(1)
        expect(asked.locator(".cpms-notification-kind")).to_have_text("Information requested")
        expect(asked.locator(".cpms-notification-case")).to_have_text(title)
        expect(asked).to_contain_class("cpms-mod-unread")
        page.screenshot(path=str(tmp_path / "01-notification.png"))

        # ... opens the case's notebook, where the question shows and is answered
        asked.click()
        notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
        expect(notebook).to_contain_text(f'CASE_ID = "{case_id}"', timeout=LAB_TIMEOUT_MS)
        expect(notebook).to_contain_text("Requests from the panel")
        path = f"cases/case-{case_id}.ipynb"
        expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(
            path.split("/")[1]
        )
        # opened, it is read (the store says so, and the desk shows it)
        expect(asked).not_to_contain_class("cpms-mod-unread")
        question = page.locator(".jp-OutputArea-output", has_text=QUESTION)
        run_all(page, deployment, name, path, question, KERNEL_TIMEOUT_MS)
        expect(question).to_contain_text(f"asked by {reviewed.member}")
        page.screenshot(path=str(tmp_path / "02-request-in-notebook.png"))

        # -- the panel signs the outcome: the desk shows it on Refresh ----------------------
        sign_outcome(deployment, reviewed)
        desk.locator(".cpms-refresh").click()
        signed = desk.locator(f".cpms-notification-outcome-signed[data-case-id='{case_id}']")
        expect(signed).to_have_count(1)
        expect(signed.locator(".cpms-notification-kind")).to_have_text("Outcome signed")
        expect(row.locator(".cpms-case-status")).to_have_text("outcome-signed")

        # ... opens the outcome PDF in a JupyterLab tab, through the server extension
        pdf_path = f"/user/{name}/cpms/api/cases/{case_id}/outcome.pdf"
        # (JupyterLab adds a cache-busting query to its GETs)
        with page.expect_response(lambda r: urlsplit(r.url).path == pdf_path) as answer:
            signed.click()
        assert answer.value.status == 200
        assert answer.value.headers["content-type"] == "application/pdf"
        assert answer.value.headers["cache-control"] == "no-store"
        tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
        expect(tab).to_contain_text("Outcome")
        shown = _pdf_in_frame(page)
        assert shown["scheme"] == "blob:" and shown["type"] == "application/pdf", shown
        assert shown["head"] == "%PDF-" and shown["size"] > 500, shown
        page.screenshot(path=str(tmp_path / "03-outcome-pdf.png"))

        # -- Review: the review app's workspace of this very case, in a tab of its own -------
        with page.context.expect_page() as opened:
            row.locator(".cpms-case-review").click()
        review = opened.value
        # through the hub's OAuth (no prompt: the browser is signed in) and back to the case
        review.wait_for_url(f"**/services/cpms-review/?case={case_id}", timeout=LAB_TIMEOUT_MS)
        expect(review.get_by_text(f"signed in as {name}")).to_be_visible(timeout=LAB_TIMEOUT_MS)
        expect(review.get_by_text(title).first).to_be_visible(timeout=LAB_TIMEOUT_MS)
        review.screenshot(path=str(tmp_path / "04-review-workspace.png"))
        review.close()

        # the front end never held a token: none in any address it asked for
        assert not [u for u in urls if "token=" in u.lower()], urls
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        print(f"screenshots in {Path(tmp_path)}")
        _stop_server(deployment, name)
