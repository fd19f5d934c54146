"""A small world for panel review tests: accounts, a submitted case with consent, actors.

Every call goes through the real store and the real policy (:func:`decide`), so the
tests see exactly what the service would do, minus HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyotp
from argon2 import PasswordHasher

from cpms_hub.accounts.registry import AccountRegistry
from cpms_hub.domain import (
    AccountRequest,
    AccountStatus,
    CaseDraft,
    CaseStatus,
    ConsentScope,
    Role,
    Urgency,
)
from cpms_hub.domain.review import PanelMemberSpec, PanelRole
from cpms_hub.policy import Action, Actor, decide
from cpms_hub.policy.decide import ACTION_SCOPES
from cpms_hub.state import State
from cpms_hub.store import AuditContext

ALL_SCOPES = frozenset(ACTION_SCOPES.values())
#: name: (role, network, expertise)
PEOPLE = {
    "owner": (Role.CLINICIAN, "ERN-A", ()),
    "coord": (Role.COORDINATOR, "ERN-A", ()),
    "coord-other": (Role.COORDINATOR, "ERN-B", ()),
    "lead": (Role.PANEL_MEMBER, "ERN-A", ("ORPHA:558", "cardiology")),
    "expert": (Role.PANEL_MEMBER, "ERN-A", ("genetics",)),
    "guest": (Role.PANEL_MEMBER, "ERN-B", ("ORPHA:558",)),
    "outsider": (Role.PANEL_MEMBER, "ERN-A", ()),
}
SECRETS = {name: pyotp.random_base32() for name in PEOPLE}


@dataclass
class World:
    state: State
    case_id: str

    def actor(self, name: str) -> Actor:
        role, network, _ = PEOPLE[name]
        return Actor(name, frozenset({role}), "H", network, AccountStatus.ACTIVE, ALL_SCOPES)

    def ctx(self, name: str) -> AuditContext:
        return AuditContext(actor=name, client="127.0.0.1")

    def policy(self, name: str, action: Action):  # noqa: ANN201
        actor = self.actor(name)
        return lambda ref: decide(actor, action, ref)

    def as_(self, name: str, action: Action) -> dict:
        """``authorize`` and ``ctx`` keyword arguments for ``name`` doing ``action``."""
        return {"authorize": self.policy(name, action), "ctx": self.ctx(name)}

    def status(self) -> CaseStatus:
        return self.state.cases.case_ref(self.case_id).status

    def set_status(self, status: CaseStatus) -> None:
        self.state.cases.set_status(self.case_id, status, ctx=self.ctx("test"))

    def assemble(self, members=None, **kw):  # noqa: ANN001, ANN201
        members = (
            members
            if members is not None
            else [
                PanelMemberSpec("lead", PanelRole.LEAD),
                PanelMemberSpec("expert", PanelRole.MEMBER),
            ]
        )
        return self.state.review.assemble(
            self.case_id,
            members,
            urgency=kw.pop("urgency", Urgency.URGENT),
            deadline=kw.pop("deadline", date.today() + timedelta(days=14)),
            **kw,
            **self.as_("coord", Action.PANEL_ASSEMBLE),
        )

    def accept(self, name: str):  # noqa: ANN201
        return self.state.review.respond(
            self.case_id, accept=True, reason="", **self.as_(name, Action.REVIEW_WRITE)
        )


def add_people(state: State) -> None:
    # cheap password hashing: these tests are about review, not logins
    state._accounts = AccountRegistry(
        state.sessions,
        state.keys,
        state.audit,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    for name, (role, network, expertise) in PEOPLE.items():
        state.accounts.create_active(
            AccountRequest(
                name, f"{name}@example.org", name.title(), "H", network, frozenset({role})
            ),
            f"{name}-password-1234",
            by="test",
            totp_secret=SECRETS[name],
            expertise=expertise,
            timezone="Europe/Paris" if network == "ERN-A" else "America/New_York",
        )


def make_world(state: State, *, people: bool = True) -> World:
    if people:
        add_people(state)
    ctx = AuditContext(actor="owner", client="127.0.0.1")
    case = state.cases.create_case(
        CaseDraft("Review case", "a summary"), owner="owner", hospital="H", network="ERN-A", ctx=ctx
    )
    state.cases.record_consent(
        case.id,
        scopes=frozenset({ConsentScope.PANEL_DISCUSSION}),
        form_version="v1",
        language="en",
        signed_on=date(2026, 1, 5),
        form_file_id=None,
        authorize=lambda ref: decide(
            Actor(
                "owner", frozenset({Role.CLINICIAN}), "H", "ERN-A", AccountStatus.ACTIVE, ALL_SCOPES
            ),
            Action.CONSENT_WRITE,
            ref,
        ),
        ctx=ctx,
    )
    world = World(state, case.id)
    world.set_status(CaseStatus.SUBMITTED)
    return world


def next_code(name: str) -> str:
    """A TOTP code for ``name`` that the registry has not seen (the next time step)."""
    return pyotp.TOTP(SECRETS[name]).at(datetime.now(UTC) + timedelta(seconds=30))
