"""What the case desk makes of the store's notifications and where its links lead (no server)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from cpms_lab.summaries import NOTIFICATION_KINDS, notification_item, review_url

from cpms_hub.domain.review import NotificationKind
from cpms_hub.hubconfig import REVIEW_SERVICE

CASE = "6f1c2d9e-0000-4000-8000-000000000001"


def _note(kind: str, **extra) -> dict:
    return {
        "id": "n1",
        "user": "clin-a",
        "kind": kind,
        "case_id": CASE,
        "link": f"http://cpms.example.org/services/cpms-review/?case={CASE}",
        "created_at": "2026-11-27T10:00:00+00:00",
        "read_at": None,
        **extra,
    }


@pytest.mark.parametrize("kind", list(NotificationKind))
def test_every_store_kind_has_a_desk_kind_and_a_text_of_its_own(kind: NotificationKind) -> None:
    item = notification_item(_note(kind.value))
    assert item["kind"] in NOTIFICATION_KINDS and item["store_kind"] == kind.value
    assert item["text"] and item["text"] != "A notice about panel work"
    assert item["read"] is False and item["case_id"] == CASE


def test_the_three_kinds_the_desk_opens_itself_and_the_rest() -> None:
    kinds = {k: notification_item(_note(k.value))["kind"] for k in NotificationKind}
    assert kinds.pop(NotificationKind.INVITATION) == "panel-invitation"
    assert kinds.pop(NotificationKind.INFORMATION_REQUEST) == "information-request"
    assert kinds.pop(NotificationKind.OUTCOME_SIGNED) == "outcome-signed"
    assert set(kinds.values()) == {"other"}  # opened in the review workspace of the case


def test_links_keep_the_stores_address_and_an_invitation_leads_to_the_inbox() -> None:
    request = notification_item(_note("information-request"))
    assert request["link"] == f"http://cpms.example.org/services/cpms-review/?case={CASE}"
    invitation = notification_item(_note("invitation"))
    assert invitation["link"] == "http://cpms.example.org/services/cpms-review/"
    # a store that made no link: the desk's own address of the same page
    assert notification_item(_note("mention", link=""))["link"] == review_url(CASE)


def test_read_and_unknown_kinds() -> None:
    assert notification_item(_note("mention", read_at="2026-11-27T11:00:00+00:00"))["read"]
    odd = notification_item(_note("something-new"))
    assert (odd["kind"], odd["text"]) == ("other", "A notice about panel work")


def test_review_url_is_the_page_the_review_app_opens_a_case_on() -> None:
    url = review_url(CASE)
    assert url == f"/services/{REVIEW_SERVICE}/?case={CASE}"
    # cpms_widgets.apps.home: ?case=<id> is the workspace of that case
    assert parse_qs(urlsplit(url).query) == {"case": [CASE]}
    assert review_url(CASE, "/cpms/") == f"/cpms/services/{REVIEW_SERVICE}/?case={CASE}"
    assert review_url(None) == f"/services/{REVIEW_SERVICE}/"
    odd = review_url("a/b?c")
    assert parse_qs(urlsplit(odd).query) == {"case": ["a/b?c"]}  # one query value, whatever
