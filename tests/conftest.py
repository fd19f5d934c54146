"""Shared fixtures: one real deployment for the integration tests of a session."""

from __future__ import annotations

import pytest

from tests.deployment import Deployment

#: the accounts every integration test can use (name: roles, hospital, network)
MATRIX_ACCOUNTS = {
    "clin-a": (("clinician",), "Hospital A", "ERN-TEST"),
    "clin-b": (("clinician",), "Hospital B", "ERN-TEST"),
    "panel-p": (("panel-member",), "Hospital C", "ERN-TEST"),
    "coord-n": (("coordinator",), "Hospital D", "ERN-TEST"),
    "coord-x": (("coordinator",), "Hospital E", "ERN-OTHER"),
    "sci-d": (("data-scientist",), "University F", "ERN-TEST"),
    "help-h": (("helpdesk",), "Office G", "ERN-TEST"),
    "audit-u": (("auditor",), "Office G", "ERN-TEST"),
}


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory):
    """Hub + proxy + store service on free loopback ports, with the matrix accounts."""
    dep = Deployment(tmp_path_factory.mktemp("deployment"))
    dep.init()
    for name, (roles, hospital, network) in MATRIX_ACCOUNTS.items():
        dep.add_account(name, roles, hospital=hospital, network=network)
    try:
        dep.start()
        yield dep
    finally:
        dep.stop()


@pytest.fixture(scope="session")
def tokens(deployment: Deployment) -> dict[str, str]:
    return {name: deployment.token(name) for name in MATRIX_ACCOUNTS}
