"""What the case desk shows: short summaries of cases and notifications.

The sidebar needs a few fields per case (title, network, status, consent
state, panel deadline), not the clinical content, so the server extension
sends only those to the browser. Notifications come from the panel review
part of the store (``GET /notifications``); until a store has that route,
the desk says so and shows none — it never invents any.

A notification carries a kind and a case id, never patient data; the text the
desk shows is made here from the kind alone. Each kind leads somewhere
(see the front end): an invitation to the review app's inbox (accepting is
done there), a request for more information to the case's notebook (where the
owner answers it), a signed outcome to its PDF, anything else about panel
work to the case's review workspace. The review app opens a case's workspace
at ``<hub base>/services/cpms-review/?case=<id>`` (``cpms_widgets.apps.home``
reads ``case`` from the query); :func:`review_url` builds that address for
the case list, and notifications keep the link the store made for them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from cpms_hub.domain import ConsentScope
from cpms_hub.domain.review import NotificationKind

__all__ = [
    "case_summary",
    "consent_state",
    "notification_item",
    "review_url",
    "NOTIFICATION_KINDS",
    "REVIEW_SERVICE",
]

#: what a notification is about, and therefore where clicking it leads (see the front end)
NOTIFICATION_KINDS = ("panel-invitation", "information-request", "outcome-signed", "other")

#: the hub service of the Panel review apps (``cpms_hub.hubconfig.REVIEW_SERVICE``)
REVIEW_SERVICE = "cpms-review"

_KINDS = {
    NotificationKind.INVITATION.value: "panel-invitation",
    NotificationKind.INFORMATION_REQUEST.value: "information-request",
    NotificationKind.OUTCOME_SIGNED.value: "outcome-signed",
}

#: what the desk says of each kind: the kind only, nothing about the case or the patient
_TEXTS = {
    NotificationKind.INVITATION.value: "You are invited to sit on a case's panel",
    NotificationKind.INFORMATION_REQUEST.value: "The panel asks you for more information",
    NotificationKind.INFORMATION_ANSWER.value: "Your request for information was answered",
    NotificationKind.MENTION.value: "You were mentioned in a panel discussion",
    NotificationKind.MEETING.value: "A panel meeting was scheduled",
    NotificationKind.DEADLINE.value: "A panel deadline is near",
    NotificationKind.OUTCOME_DRAFTED.value: "An outcome was drafted for you to sign",
    NotificationKind.OUTCOME_SIGNED.value: "The panel's outcome is signed",
}


def review_url(case_id: str | None, base_url: str = "/") -> str:
    """The review app's page of a case (its inbox without one), below the hub's base URL."""
    root = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    page = f"{root}services/{REVIEW_SERVICE}/"
    return page + (f"?case={quote(case_id, safe='')}" if case_id else "")


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


def case_summary(
    case: dict[str, Any], *, deadline: str | None = None, base_url: str = "/"
) -> dict[str, Any]:
    """The sidebar's row for one case of the store's JSON (``deadline``: its panel's)."""
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
        "panel_deadline": deadline or _deadline(case),
        "updated_at": case.get("updated_at"),
        "review_url": review_url(case["id"], base_url),
    }


def notification_item(note: dict[str, Any], base_url: str = "/") -> dict[str, Any]:
    """One notification of the store's inbox (``GET /notifications``) in the desk's shape."""
    raw_kind = str(note.get("kind") or "")
    case_id = note.get("case_id")
    link = note.get("link") or review_url(case_id, base_url)
    if raw_kind == NotificationKind.INVITATION.value:
        # the invitee reads the case only once they accepted, which they do in the inbox
        link = link.split("?", 1)[0]
    return {
        "id": str(note.get("id", "")),
        "kind": _KINDS.get(raw_kind, "other"),
        "store_kind": raw_kind,
        "case_id": case_id,
        "text": _TEXTS.get(raw_kind, "A notice about panel work"),
        "created_at": note.get("created_at"),
        "read": note.get("read_at") is not None,
        # the store's own link (its public address) when it made one
        "link": link,
    }
