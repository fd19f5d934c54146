"""The custom JupyterHub scopes of CPMS.

A token reaches the store only if it carries ``access:services!service=cpms-store``;
what it may do there is further limited by these scopes, which JupyterHub
grants through roles bound to groups (see :mod:`cpms_hub.hubconfig`). The
store then checks the account's own roles and its membership of the case:
a scope alone never opens a case.
"""

from __future__ import annotations

__all__ = ["Scope", "SCOPE_DESCRIPTIONS"]


class Scope:
    CASES_READ = "custom:cpms:cases:read"
    CASES_WRITE = "custom:cpms:cases:write"
    PANELS = "custom:cpms:panels"
    COHORTS = "custom:cpms:cohorts:read"
    ACCOUNTS = "custom:cpms:accounts"
    AUDIT = "custom:cpms:audit:read"


SCOPE_DESCRIPTIONS: dict[str, str] = {
    Scope.CASES_READ: "Read the cases you are a member of.",
    Scope.CASES_WRITE: "Create cases and change the cases you own.",
    Scope.PANELS: "Coordinate the panels of your network.",
    Scope.COHORTS: "Read anonymised cohorts and aggregate reports.",
    Scope.ACCOUNTS: "Review account requests; disable accounts; reset MFA.",
    Scope.AUDIT: "Read the audit trail.",
}
