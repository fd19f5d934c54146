"""The panel's outcome as a PDF report (fpdf2), and a meeting as iCalendar (RFC 5545).

The PDF holds what the case owner already sees through the API: the case id (a
random UUID), the network, the recommendation, who signed or dissented and when,
each signer's key fingerprint and the SHA-256 of the canonical outcome, so that a
printed report can be matched against ``cpms-admin verify-outcome``. It never
names the patient (no pseudonym, no case title).

Both outputs are deterministic: the PDF's creation date is the outcome's drafting
time and nothing else in it depends on the clock, so the same outcome always gives
the same bytes (with the same fpdf2 version); the ``.ics`` stamps its events with
the meeting's own start time. Text goes through the core Helvetica font, which
covers Latin-1: other characters are shown as ``?`` rather than failing.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, timedelta

from fpdf import FPDF
from icalendar import Calendar, Event

from cpms_hub.domain.review import Meeting, Outcome, canonical_json

__all__ = ["outcome_pdf", "meeting_ics", "outcome_sha256"]


def outcome_sha256(outcome: Outcome) -> str:
    return hashlib.sha256(canonical_json(outcome.document())).hexdigest()


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def outcome_pdf(
    outcome: Outcome, *, network: str, pending: list[str] | tuple[str, ...] = ()
) -> bytes:
    """The outcome report as PDF bytes."""
    d = outcome.draft
    pdf = FPDF(format="A4")
    # uncompressed: a few kilobytes more, and the text stays greppable by auditors and tests
    pdf.set_compression(False)
    pdf.set_creation_date(outcome.drafted_at.astimezone(UTC))
    pdf.set_title("CPMS panel outcome")
    pdf.set_author("CPMS expert panel")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def heading(text: str) -> None:
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 12)
        pdf.multi_cell(width, 7, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 10)

    def para(text: str) -> None:
        pdf.multi_cell(width, 5.5, _latin1(text), new_x="LMARGIN", new_y="NEXT")

    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(width, 9, "Expert panel outcome", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    para(f"Case {outcome.case_id} - network {network}")
    para(
        f"Version {outcome.version}, drafted by {outcome.drafted_by} on "
        f"{outcome.drafted_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC - "
        + ("signed by the panel" if outcome.signed else "NOT YET SIGNED by every member")
    )

    heading("Diagnosis")
    para(f"{d.diagnosis_code} - {d.diagnosis_label}")
    if d.summary:
        heading("Summary")
        para(d.summary)
    heading("Recommended investigations")
    for item in d.investigations or ("none",):
        para(f"- {item}")
    heading("Treatment plan")
    para(d.treatment_plan)
    heading("Follow-up")
    para(d.follow_up.isoformat())

    heading("Signatures (Ed25519)")
    for e in outcome.endorsements:
        fingerprint = hashlib.sha256(e.public_key).hexdigest()[:16]
        line = (
            f"{e.signer}: {e.decision.value} on {e.signed_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC "
            f"(key {fingerprint})"
        )
        para(line + (f" - {e.reason}" if e.reason else ""))
    if pending:
        para("Not signed yet: " + ", ".join(pending))
    pdf.ln(2)
    pdf.set_font("Helvetica", "", 8)
    para(f"SHA-256 of the canonical outcome: {outcome_sha256(outcome)}")
    para("Verify with: cpms-admin verify-outcome " + outcome.case_id)
    return bytes(pdf.output())


def meeting_ics(meeting: Meeting, *, link: str) -> bytes:
    """An iCalendar invitation for the meeting (times in UTC)."""
    cal = Calendar()
    cal.add("prodid", "-//CPMS//panel review//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    event = Event()
    event.add("uid", f"{meeting.id}@cpms")
    event.add("dtstamp", meeting.starts_at.astimezone(UTC))
    event.add("dtstart", meeting.starts_at.astimezone(UTC))
    event.add(
        "dtend", meeting.starts_at.astimezone(UTC) + timedelta(minutes=meeting.duration_minutes)
    )
    event.add("summary", meeting.title)
    event.add("description", f"CPMS panel meeting. Open the case: {link}")
    event.add("url", link)
    cal.add_component(event)
    return cal.to_ical()
