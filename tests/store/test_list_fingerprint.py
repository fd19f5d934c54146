"""The case list's fingerprint (the ETag of ``GET /cases``): follows the list, audits nothing."""

from __future__ import annotations

from cpms_hub.domain import CaseStatus, MemberRole
from cpms_hub.policy import Decision
from cpms_hub.state import State
from tests.store.test_cases import CTX, all_entries, allow, deny, new_case


def _print(state: State, user: str = "alice", authorize=allow) -> str:  # noqa: ANN001
    return state.cases.list_fingerprint(user=user, network=None, authorize=authorize)


def test_fingerprint_follows_what_the_list_shows_and_is_not_audited(backend: State) -> None:
    empty = _print(backend)
    first = new_case(backend, "Ataxia")
    one = _print(backend)
    assert one != empty and len(one) == 32
    audited = len(all_entries(backend))
    assert _print(backend) == one  # nothing changed: the same
    assert len(all_entries(backend)) == audited  # and no audit entry for asking

    seen = {empty, one}

    def changed() -> str:
        now = _print(backend)
        assert now not in seen
        seen.add(now)
        return now

    second = new_case(backend, "Seizures")
    changed()  # a case more
    backend.cases.update_case(first.id, title="Ataxia, revised", authorize=allow, ctx=CTX)
    changed()  # a title (updated_at)
    backend.cases.add_member(first.id, "bob", MemberRole.ASSISTANT, ctx=CTX)
    changed()  # a member
    backend.cases.set_status(second.id, CaseStatus.SUBMITTED, ctx=CTX)
    changed()  # a status

    # only what the caller may read counts: a refused case is as good as absent
    only_first = _print(backend, authorize=lambda ref: Decision(ref.id == first.id, ()))
    assert only_first not in seen
    assert _print(backend, authorize=deny) == empty
    assert _print(backend, user="carol") == empty  # not a member of any
