"""Demo accounts and synthetic cases for ``make demo`` (and nothing else).

Every account of the design's table of users is created active, with a
password printed at start-up and a TOTP seed already enrolled, so that
``cpms-admin totp NAME`` shows the code to type. The cases are invented:
no real patient is described. Seeding is idempotent.

Panel review: the experts have expertise (ORPHA codes, specialties) and time
zones for the coordinator's search; the ataxia case has a panel in discussion
(prof-rossi leads, dr-schmidt and the guest prof-silva from another network have
accepted; two opinions, a thread, an open request for information to the owner),
the skeletal dysplasia case waits for the coordinator to assemble its panel.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyotp

from cpms_hub.domain import (
    AccountRequest,
    CaseDraft,
    CaseStatus,
    ConsentScope,
    NotFoundError,
    Role,
    Urgency,
)
from cpms_hub.domain.codec import content_from_json
from cpms_hub.domain.review import PanelMemberSpec, PanelRole
from cpms_hub.policy import Decision
from cpms_hub.state import State
from cpms_hub.store import AuditContext

__all__ = ["DEMO_ACCOUNTS", "demo_password", "seed"]

NETWORK = "ERN-ITHACA"
#: the network of the demo's guest expert
OTHER_NETWORK = "ERN-RND"
#: expertise and time zone of the demo's experts
DEMO_EXPERTISE: dict[str, tuple[tuple[str, ...], str]] = {
    "prof-rossi": (("ORPHA:100", "neurogenetics", "ataxias"), "Europe/Rome"),
    "dr-schmidt": (("ORPHA:100", "immunology"), "Europe/Berlin"),
    "prof-silva": (("ORPHA:100", "cancer predisposition"), "Europe/Lisbon"),
}

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
        "dr-schmidt",
        "Lena Schmidt",
        "Charité Berlin",
        NETWORK,
        (Role.PANEL_MEMBER,),
        "panel member (expert)",
    ),
    (
        "prof-silva",
        "Rui Silva",
        "Hospital de Santa Maria Lisboa",
        OTHER_NETWORK,
        (Role.PANEL_MEMBER,),
        "guest expert from another network",
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


#: a one-page PDF standing in for the scanned, signed consent form
DEMO_CONSENT_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)

_DEMO_CONTENT = {
    "ITH-0001": {
        "patient": {"pseudonym": "ITH-0001", "sex": "male", "birth_year": 2020, "country": "FR"},
        "phenotypes": [
            {"hpo_id": "HP:0001251", "label": "Ataxia", "onset": "HP:0011463"},
            {"hpo_id": "HP:0001009", "label": "Telangiectasia"},
            {"hpo_id": "HP:0002721", "label": "Immunodeficiency"},
            {"hpo_id": "HP:0001250", "label": "Seizure", "excluded": True},
        ],
        "diagnoses": [{"system": "ORPHA", "code": "ORPHA:100", "label": "Ataxia-telangiectasia"}],
        "genetics": [
            {
                "gene": "ATM",
                "hgvs": "NM_000051.4:c.7630-2A>C",
                "zygosity": "homozygous",
                "classification": "likely-pathogenic",
            }
        ],
        "question": "Confirm ataxia-telangiectasia; advise on cancer surveillance.",
        "urgency": "routine",
    },
    "WAW-0107": {
        "patient": {"pseudonym": "WAW-0107", "sex": "female", "birth_year": 2011, "country": "PL"},
        "phenotypes": [{"hpo_id": "HP:0004322", "label": "Short stature"}],
        "question": "Which skeletal dysplasia?",
        "urgency": "routine",
    },
}


def _allow(_ref: object) -> Decision:
    # seeding acts as the clinicians themselves would
    return Decision(True, ("demo seed",))


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
        expertise, timezone = DEMO_EXPERTISE.get(name, ((), "UTC"))
        reg.create_active(
            req,
            demo_password(name),
            by="cpms-admin",
            totp_secret=pyotp.random_base32(),
            expertise=expertise,
            timezone=timezone,
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
            if pseudonym in _DEMO_CONTENT:
                content = content_from_json(_DEMO_CONTENT[pseudonym])
                state.cases.set_content(case.id, content, authorize=_allow, ctx=ctx)
            if status is not CaseStatus.DRAFT:
                form = state.cases.add_file(
                    case.id,
                    iter([DEMO_CONSENT_PDF]),
                    name="consent-signed.pdf",
                    media_type="application/pdf",
                    max_size=1 << 20,
                    authorize=_allow,
                    ctx=ctx,
                )
                state.cases.record_consent(
                    case.id,
                    scopes=frozenset({ConsentScope.PANEL_DISCUSSION, ConsentScope.REGISTRIES}),
                    form_version="ERN-2024-1",
                    language="en",
                    signed_on=date(2026, 10, 1),
                    form_file_id=form.id,
                    authorize=_allow,
                    ctx=ctx,
                )
                state.cases.set_status(case.id, status, ctx=ctx)
            if pseudonym == "ITH-0001":
                _panel_in_discussion(state, case.id)
    if not quiet:
        print(banner())


def _as(name: str) -> AuditContext:
    return AuditContext(actor=name, client="demo-seed")


def _panel_in_discussion(state: State, case_id: str) -> None:
    """A panel of three that has started discussing (the seed acts as each person)."""
    review = state.review
    review.assemble(
        case_id,
        [
            PanelMemberSpec("prof-rossi", PanelRole.LEAD),
            PanelMemberSpec("dr-schmidt", PanelRole.MEMBER),
            PanelMemberSpec("prof-silva", PanelRole.GUEST),
        ],
        urgency=Urgency.ROUTINE,
        deadline=(datetime.now(UTC) + timedelta(days=21)).date(),
        authorize=_allow,
        ctx=_as("coord-jansen"),
    )
    for name in ("prof-rossi", "dr-schmidt", "prof-silva"):
        review.respond(case_id, accept=True, reason="", authorize=_allow, ctx=_as(name))
    review.put_contribution(
        case_id,
        "Clinical picture and raised AFP fit ataxia-telangiectasia; the ATM splice variant "
        "is likely causal. I would confirm with ATM protein studies.",
        authorize=_allow,
        ctx=_as("prof-rossi"),
    )
    review.put_contribution(
        case_id,
        "Agree. Immunoglobulins and lymphocyte subsets are needed before advising on "
        "infection prophylaxis.",
        authorize=_allow,
        ctx=_as("dr-schmidt"),
    )
    first = review.post_message(
        case_id,
        "Do we recommend MRI-only cancer surveillance?",
        mentions=["prof-silva"],
        authorize=_allow,
        ctx=_as("prof-rossi"),
    )
    review.post_message(
        case_id,
        "Yes: no ionising radiation; abdominal ultrasound and MRI.",
        parent_id=first.id,
        authorize=_allow,
        ctx=_as("prof-silva"),
    )
    review.request_information(
        case_id,
        "Are immunoglobulin levels (IgA, IgG2) available?",
        authorize=_allow,
        ctx=_as("dr-schmidt"),
    )


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
