"""A case taken through panel review by its people, through the store's API, for the case desk.

:func:`panel_on_case` submits an invented case for its owner (as a notebook
would, see :mod:`tests.review_cases`), has a coordinator of the network assemble
a panel of two new panel members, both accept, and the member asks the owner
for more information: the owner's inbox now holds a real ``information-request``
notification. :func:`sign_outcome` has the lead give an opinion (which starts
the discussion) and draft the outcome, and both sign
it with their authenticator code: the owner gets ``outcome-signed`` and the
store makes the outcome PDF. Nothing here is real patient data.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from datetime import date, timedelta

from cpms_hub.domain.review import OutcomeDraft
from cpms_widgets import CaseStoreClient
from tests.review_cases import submitted_case

__all__ = ["ReviewedCase", "panel_on_case", "sign_outcome", "QUESTION", "OUTCOME"]

QUESTION = "Invented: was an EEG done during sleep?"

OUTCOME = OutcomeDraft(
    diagnosis_code="ORPHA:33069",
    diagnosis_label="Dravet syndrome",
    investigations=("Video-EEG",),
    treatment_plan="Valproate and clobazam; avoid sodium-channel blockers.",
    follow_up=date.today() + timedelta(days=90),
    summary="Invented: the panel favours Dravet syndrome.",
)


@dataclass(frozen=True)
class ReviewedCase:
    case_id: str
    title: str
    lead: str
    member: str


def _name(prefix: str) -> str:
    return f"{prefix}-" + "".join(random.choices(string.ascii_lowercase, k=4))


def panel_on_case(
    deployment, owner_token: str, title: str, coordinator: str = "coord-n"
) -> ReviewedCase:  # noqa: ANN001
    """A submitted case of the owner, a panel that accepted, and a question to the owner."""
    lead, member = (
        deployment.add_account(_name(p), ("panel-member",), hospital=h, network="ERN-TEST").name
        for p, h in (("desklead", "Hospital L"), ("deskmember", "Hospital M"))
    )
    api = deployment.direct_api
    with CaseStoreClient(api, owner_token) as owner:
        case_id = submitted_case(owner, title).id
    with CaseStoreClient(api, deployment.token(coordinator)) as coord:
        coord.assemble_panel(
            case_id,
            [(lead, "lead"), (member, "member")],
            deadline=date.today() + timedelta(days=14),
        )
    for name in (lead, member):
        with CaseStoreClient(api, deployment.token(name)) as person:
            person.accept_invitation(case_id)
    with CaseStoreClient(api, deployment.token(member)) as person:
        person.request_information(case_id, QUESTION)
    return ReviewedCase(case_id, title, lead, member)


def sign_outcome(deployment, case: ReviewedCase) -> None:  # noqa: ANN001
    """The lead gives an opinion and drafts the outcome; lead and member sign it
    (authenticator code as step-up)."""
    api = deployment.direct_api
    with CaseStoreClient(api, deployment.token(case.lead)) as lead:
        lead.contribute(case.case_id, "Invented: fits Dravet syndrome.")  # starts the discussion
        lead.draft_outcome(case.case_id, OUTCOME)
    for name in (case.lead, case.member):
        with CaseStoreClient(api, deployment.token(name)) as person:
            person.endorse_outcome(case.case_id, totp=deployment.accounts[name].code())
