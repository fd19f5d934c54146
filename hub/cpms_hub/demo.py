"""Demo accounts and synthetic cases for ``make demo`` (and nothing else).

Every account of the design's table of users is created active, with a
password printed at start-up and a TOTP seed already enrolled, so that
``cpms-admin totp NAME`` shows the code to type. The cases are invented:
no real patient is described. Seeding is idempotent.
"""

from __future__ import annotations

import pyotp

from cpms_hub.domain import AccountRequest, CaseDraft, CaseStatus, MemberRole, NotFoundError, Role
from cpms_hub.state import State
from cpms_hub.store import AuditContext

__all__ = ["DEMO_ACCOUNTS", "demo_password", "seed"]

NETWORK = "ERN-ITHACA"

#: name, full name, hospital, network, roles, what they stand for
DEMO_ACCOUNTS: tuple[tuple[str, str, str, str, tuple[Role, ...], str], ...] = (
    (
        "dr-mercier",
        "Claire Mercier",
        "Hôpital Universitaire de Lyon",
        NETWORK,
        (Role.CLINICIAN,),
        "clinician (case owner)",
    ),
    (
        "dr-kowalski",
        "Piotr Kowalski",
        "Szpital Kliniczny Warszawa",
        NETWORK,
        (Role.CLINICIAN,),
        "clinician at another hospital",
    ),
    (
        "prof-rossi",
        "Giulia Rossi",
        "Ospedale Pediatrico Roma",
        NETWORK,
        (Role.PANEL_MEMBER,),
        "panel member (expert)",
    ),
    (
        "coord-jansen",
        "Eva Jansen",
        "Radboudumc Nijmegen",
        NETWORK,
        (Role.COORDINATOR,),
        "network coordinator",
    ),
    (
        "ds-novak",
        "Jan Novák",
        "Masaryk University Brno",
        NETWORK,
        (Role.DATA_SCIENTIST,),
        "data scientist",
    ),
    (
        "helpdesk",
        "Network Helpdesk",
        "ERN Coordination Office",
        NETWORK,
        (Role.HELPDESK,),
        "helpdesk",
    ),
    (
        "dpo-auditor",
        "Data Protection Officer",
        "ERN Coordination Office",
        NETWORK,
        (Role.AUDITOR,),
        "auditor / data protection officer",
    ),
)

_CASES = (
    (
        "dr-mercier",
        "Boy, 6, progressive ataxia and ocular telangiectasia",
        "Onset of gait instability at 2 years; recurrent sino-pulmonary infections. Raised AFP. "
        "Question: confirm suspected ataxia-telangiectasia and advise on surveillance.",
        CaseStatus.SUBMITTED,
        "ITH-0001",
    ),
    (
        "dr-mercier",
        "Girl, 11 months, infantile spasms and hypopigmented macules",
        "Draft, history being completed.",
        CaseStatus.DRAFT,
        "ITH-0002",
    ),
    (
        "dr-kowalski",
        "Adolescent with short stature and skeletal dysplasia",
        "Disproportionate short stature; radiographs attached later. Question: diagnosis?",
        CaseStatus.SUBMITTED,
        "WAW-0107",
    ),
)


def demo_password(name: str) -> str:
    return f"{name}-demo-2026"


def seed(state: State, *, quiet: bool = True) -> None:
    reg = state.accounts
    created = []
    for name, full, hospital, network, roles, _ in DEMO_ACCOUNTS:
        try:
            reg.get(name)
            continue
        except NotFoundError:
            pass
        req = AccountRequest(name, f"{name}@example.org", full, hospital, network, frozenset(roles))
        reg.create_active(
            req, demo_password(name), by="cpms-admin", totp_secret=pyotp.random_base32()
        )
        created.append(name)
    ctx = AuditContext(actor="cpms-admin", client="demo-seed")
    if created and "dr-mercier" in created:
        for owner, title, summary, status, pseudonym in _CASES:
            owner_account = reg.get(owner)
            case = state.cases.create_case(
                CaseDraft(title, summary),
                owner=owner,
                hospital=owner_account.hospital,
                network=owner_account.network,
                ctx=ctx,
                pseudonym=pseudonym,
            )
            if status is not CaseStatus.DRAFT:
                state.cases.set_status(case.id, status, ctx=ctx)
                state.cases.add_member(case.id, "prof-rossi", MemberRole.PANEL_MEMBER, ctx=ctx)
    if not quiet:
        print(banner())


def banner() -> str:
    lines = ["", "Demo accounts (password — role):"]
    for name, _, hospital, _, _, what in DEMO_ACCOUNTS:
        lines.append(f"  {name:13} {demo_password(name):24} {what}, {hospital}")
    lines += [
        "",
        "Every login asks for a one-time code. Show an account's current code with:",
        "  .venv/bin/cpms-admin totp NAME",
        "",
    ]
    return "\n".join(lines)
