"""The panel review journey in Chromium, through the real hub, proxy, store and review apps.

One deployment for the module, with e-mail going to a local SMTP server. The
owner's case is submitted from Python (as in a notebook). Then, each person
in their own browser, logged in at the hub's login page (password + TOTP)
and sent on to ``/services/cpms-review/`` by the hub's OAuth: the
coordinator finds two experts and assembles the panel; both accept in their
inbox, write their opinion and discuss (with a mention and a reply); the lead
drafts the outcome; both sign with a fresh authenticator code. The owner
reads the signed outcome in a notebook (executed by nbclient as the owner)
and downloads the PDF; ``cpms-admin verify-outcome`` passes, and fails once
a byte of the stored outcome is changed; the e-mails the SMTP server got
carry links, never patient data.
"""

from __future__ import annotations

import time

import nbformat
import pytest
from nbclient import NotebookClient

from cpms_widgets import CaseStoreClient
from tests.deployment import Deployment
from tests.integration.test_review_api import _flip_a_byte_of_the_outcome, smtp  # noqa: F401
from tests.review_cases import submitted_case

pytestmark = [pytest.mark.deployment, pytest.mark.browser]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

PEOPLE = {
    "jrn-owner": (("clinician",), "Hospital A", "ERN-TEST"),
    "jrn-coord": (("coordinator",), "Hospital D", "ERN-TEST"),
    "jrn-lead": (("panel-member",), "Hospital L", "ERN-TEST"),
    "jrn-member": (("panel-member",), "Hospital M", "ERN-TEST"),
}
TITLE = "Girl, 5, refractory seizures"
OPINIONS = {
    "jrn-lead": "Fits Dravet syndrome; avoid sodium-channel blockers.",
    "jrn-member": "Agree; add stiripentol if valproate and clobazam fail.",
}


@pytest.fixture(scope="module")
def dep(tmp_path_factory, smtp):  # noqa: ANN001, ANN201, F811
    controller, _ = smtp
    d = Deployment(
        tmp_path_factory.mktemp("journey"),
        extra_env={
            "CPMS_SMTP_HOST": "127.0.0.1",
            "CPMS_SMTP_PORT": str(controller.port),
            "CPMS_SMTP_SENDER": "cpms@example.org",
            "CPMS_MAIL_INTERVAL": "1",
        },
    )
    d.init()
    for name, (roles, hospital, network) in PEOPLE.items():
        d.add_account(name, roles, hospital=hospital, network=network)
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def case_id(dep):  # noqa: ANN001, ANN201
    with CaseStoreClient(dep.direct_api, dep.token("jrn-owner")) as owner:
        return submitted_case(owner, TITLE).id


@pytest.fixture
def person(browser, dep, tmp_path):  # noqa: ANN001, ANN201
    """Log someone in through the hub, in a browser context of their own; their page."""
    contexts = []

    def login(name: str, query: str = ""):  # noqa: ANN202
        ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
        ctx.set_default_timeout(30_000)
        contexts.append(ctx)
        page = ctx.new_page()
        acc = dep.accounts[name]
        page.goto(f"{dep.review_url}{query}")
        page.wait_for_url("**/hub/login**")
        page.fill("#username_input", acc.name)
        page.fill("#password_input", acc.password)
        page.fill("#otp_input", acc.code())
        page.click("#login_submit")
        page.wait_for_url(f"**/services/cpms-review/{query}")
        expect(page.get_by_text(f"signed in as {name}")).to_be_visible()
        return page

    yield login
    for i, ctx in enumerate(contexts):
        for j, p in enumerate(ctx.pages):
            try:
                p.screenshot(path=str(tmp_path / f"{i}-{j}.png"), full_page=True)
            except Exception:  # noqa: S110 - screenshots are a courtesy for debugging
                pass
        ctx.close()


def _done(page, text: str) -> None:
    expect(page.get_by_text(text).first).to_be_visible()


def _type(page, placeholder: str, text: str) -> None:
    box = page.get_by_placeholder(placeholder).first
    box.fill(text)
    box.press("Tab")  # Panel sends the value on change


def _tab(page, name: str) -> None:
    page.get_by_text(name, exact=True).first.click()


def test_panel_review_journey(dep, case_id, person, smtp, tmp_path):  # noqa: ANN001, F811
    # -- the coordinator assembles a panel of two ---------------------------------------
    coord = person("jrn-coord")
    expect(coord.get_by_role("heading", name="Coordinator")).to_be_visible()
    coord.get_by_text(case_id).first.click()
    expect(coord.get_by_text(f"{case_id[:8]}…").first).to_be_visible()
    for name, role in (("jrn-lead", "lead"), ("jrn-member", "member")):
        _type(coord, "Expertise, name or hospital", name)
        coord.get_by_role("button", name="Search experts").click()
        expect(coord.get_by_text(f"{name} ·").first).to_be_visible()
        coord.get_by_role("button", name=f"as {role}").first.click()
        expect(coord.get_by_text(f"{name} ({role})")).to_be_visible()
    coord.get_by_role("button", name="Assemble panel").click()
    _done(coord, "Panel assembled")

    # -- both accept and contribute; they discuss -----------------------------------------
    pages = {}
    for name in ("jrn-lead", "jrn-member"):
        page = person(name)
        expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
        page.get_by_role("button", name="Accept").click()
        _done(page, "Invitation accepted")
        page.goto(f"{dep.review_url}?case={case_id}")
        expect(page.get_by_text(TITLE).first).to_be_visible()
        _tab(page, "Contributions")
        _type(page, "My opinion on the case", OPINIONS[name])
        page.get_by_role("button", name="Save my contribution").click()
        _done(page, "Contribution saved")
        pages[name] = page

    lead, member = pages["jrn-lead"], pages["jrn-member"]
    _tab(lead, "Discussion")
    _type(lead, "Message to the panel (@name mentions)", "Starting dose, @jrn-member?")
    lead.get_by_role("button", name="Post").click()
    _done(lead, "Message posted")
    member.reload()
    _tab(member, "Discussion")
    expect(member.locator("p", has_text="Starting dose").first).to_be_visible()
    # a reply to the lead's message: shown under it, one level in
    member.locator("select").first.select_option(index=1)
    _type(member, "Message to the panel (@name mentions)", "Low, titrated weekly.")
    member.get_by_role("button", name="Post").click()
    _done(member, "Message posted")
    expect(member.locator("blockquote", has_text="Low, titrated weekly.").first).to_be_visible()

    # -- the lead drafts; both sign with a fresh authenticator code ----------------------
    lead.reload()
    _tab(lead, "Outcome")
    _type(lead, "ORPHA:558", "ORPHA:33069")
    _type(lead, "Diagnosis label", "Dravet syndrome")
    _type(lead, "Recommended investigations (one a line)", "Video-EEG\nSCN1A in parents")
    _type(lead, "Treatment plan", "Valproate and clobazam; avoid sodium-channel blockers.")
    lead.keyboard.press("Escape")  # Tab opened the follow-up date's calendar (default kept)
    lead.get_by_role("button", name="Draft outcome").click()
    _done(lead, "Outcome drafted")
    for name, page in (("jrn-lead", lead), ("jrn-member", member)):
        page.reload()
        _tab(page, "Outcome")
        _type(page, "Authenticator code", dep.accounts[name].code())
        page.get_by_role("button", name="Endorse").click()
        _done(page, "Outcome endorsed")
    expect(member.get_by_text("signed)").first).to_be_visible()

    # -- the owner reads the outcome in a notebook and downloads the PDF ------------------
    pdf_path = tmp_path / "outcome.pdf"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from cpms_widgets import CaseStoreClient\n"
            "client = CaseStoreClient.from_env()\n"
            f"outcome = client.outcome({case_id!r})\n"
            "print(outcome.signed, outcome.draft.diagnosis_code, len(outcome.endorsements))\n"
            f"path = client.outcome_pdf({case_id!r}, {str(pdf_path)!r})\n"
            "print(path.read_bytes()[:5])"
        )
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    env = {
        "JUPYTERHUB_API_TOKEN": dep.token("jrn-owner"),
        "CPMS_STORE_URL": dep.direct_api,
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    out = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert "True ORPHA:33069 2" in out, nb.cells[0].outputs
    assert "b'%PDF-'" in out
    assert pdf_path.read_bytes().startswith(b"%PDF-")

    # -- verify-outcome passes, then fails once a byte of the outcome changes -------------
    ok = dep.admin("verify-outcome", case_id)
    assert "every signature verifies" in ok.stdout
    _flip_a_byte_of_the_outcome(dep, case_id)
    bad = dep.admin("verify-outcome", case_id, check=False)
    assert bad.returncode == 1

    # -- the e-mails: links, never patient data -------------------------------------------
    _, inbox = smtp
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(inbox.messages) < 3:
        time.sleep(0.5)
    recipients = {r for rcpts, _ in inbox.messages for r in rcpts}
    assert {"jrn-lead@example.org", "jrn-member@example.org"} <= recipients
    for _, text in inbox.messages:
        for secret in (TITLE, "Dravet", "seizure", "stiripentol", "REV-", *OPINIONS.values()):
            assert secret not in text
