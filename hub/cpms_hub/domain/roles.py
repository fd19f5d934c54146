"""Who does what: the roles of a CPMS deployment.

The roles follow the design's table of users (clinician, panel member,
coordinator, data scientist, helpdesk, auditor). A role is a property of an
account; membership of a case (owner, assistant, panel member) is a property
of the case. Both are needed for a decision.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Role", "MemberRole"]


class Role(StrEnum):
    """A person's role in the network (an account may hold several)."""

    CLINICIAN = "clinician"
    PANEL_MEMBER = "panel-member"
    COORDINATOR = "coordinator"
    DATA_SCIENTIST = "data-scientist"
    HELPDESK = "helpdesk"
    AUDITOR = "auditor"


class MemberRole(StrEnum):
    """A person's part in one case."""

    OWNER = "owner"
    ASSISTANT = "assistant"
    PANEL_MEMBER = "panel-member"
