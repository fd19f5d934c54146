"""The store client of the person using a review app, from their hub OAuth login.

In ``panel serve`` (the ``cpms-review`` service) Panel's generic OAuth
provider logged the user in through JupyterHub; ``pn.state.access_token`` is
the hub token issued to the review apps for that user, with the store's
access scope and the subset of the custom scopes the user holds. The apps
call the store only with it, so the store's policy and audit trail see the
person, never the service. ``CPMS_STORE_URL`` is the store on loopback.
"""

from __future__ import annotations

import os

from cpms_hub.domain import AuthenticationError, CpmsError

from ..client import CaseStoreClient

__all__ = ["session_client", "session_user"]


def session_user() -> str:
    import panel as pn

    return pn.state.user or ""


def session_client() -> CaseStoreClient:
    """A client acting as this browser session's user (401 if no one is logged in)."""
    import panel as pn

    token = pn.state.access_token
    if not token:
        raise AuthenticationError("no one is logged in to this session")
    url = os.environ.get("CPMS_STORE_URL", "")
    if not url:
        raise CpmsError("CPMS_STORE_URL is not set: is this the cpms-review service?")
    return CaseStoreClient(url, token)
