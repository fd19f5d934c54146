"""What the case desk shows: short summaries of cases and notifications.

The sidebar needs a few fields per case (title, network, status, consent
state, panel deadline), not the clinical content, so the server extension
sends only those to the browser. Notifications come from the panel review
part of the store (``GET /notifications``); until a store has that route,
the desk says so and shows none — it never invents any.
"""

from __future__ import annotations

from typing import Any

from cpms_hub.domain import ConsentScope

__all__ = ["case_summary", "consent_state", "notification_item", "NOTIFICATION_KINDS"]

#: what a notification is about, and therefore where clicking it leads (see the front end)
NOTIFICATION_KINDS = ("panel-invitation", "information-request", "outcome-signed", "other")

_KIND_ALIASES = {
    "invitation": "panel-invitation",
    "panel_invitation": "panel-invitation",
    "panel-invitation": "panel-invitation",
    "information_request": "information-request",
    "information-request": "information-request",
    "info_request": "information-request",
    "request": "information-request",
    "outcome": "outcome-signed",
    "outcome_signed": "outcome-signed",
    "outcome-signed": "outcome-signed",
}


def consent_state(consent: dict[str, Any] | None) -> str:
    """``granted``, ``withdrawn`` or ``missing``: the consent that panel discussion needs."""
    consent = consent or {}
    needed = ConsentScope.PANEL_DISCUSSION.value
    if needed in (consent.get("withdrawn") or ()):
        return "withdrawn"
    if needed in (consent.get("granted") or ()):
        return "granted"
    return "missing"


def _deadline(case: dict[str, Any]) -> str | None:
    panel = case.get("panel") if isinstance(case.get("panel"), dict) else {}
    return case.get("panel_deadline") or panel.get("deadline") or None


def case_summary(case: dict[str, Any]) -> dict[str, Any]:
    """The sidebar's row for one case of the store's JSON."""
    consent = case.get("consent") or {}
    return {
        "id": case["id"],
        "title": case.get("title", ""),
        "network": case.get("network", ""),
        "hospital": case.get("hospital", ""),
        "owner": case.get("owner", ""),
        "status": case.get("status", ""),
        "consent": consent_state(consent),
        "consent_granted": sorted(consent.get("granted") or ()),
        "panel_deadline": _deadline(case),
        "updated_at": case.get("updated_at"),
    }


def notification_item(note: dict[str, Any]) -> dict[str, Any]:
    """One notification in the desk's shape, whatever spelling of its kind the store uses."""
    raw_kind = str(note.get("kind") or note.get("type") or "").lower()
    return {
        "id": str(note.get("id", "")),
        "kind": _KIND_ALIASES.get(raw_kind, "other"),
        "case_id": note.get("case_id"),
        "text": note.get("text") or note.get("message") or note.get("title") or raw_kind,
        "created_at": note.get("created_at"),
        "read": bool(note.get("read", False)),
    }
