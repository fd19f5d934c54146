"""Staff accounts: request, approval, TOTP enrolment and login for the hub.

The package is split by trust and by dependency weight:

* :mod:`.passwords` and :mod:`.totp` are pure functions over argon2-cffi and
  pyotp, with no database;
* :mod:`.registry` (:class:`AccountRegistry`) is the only code that touches
  the ``accounts`` table; ``cpms-admin``, the store service and the hub all
  go through it;
* :mod:`.authenticator` and :mod:`.handlers` adapt the registry to
  JupyterHub, and are imported lazily here so that ``cpms-admin`` and the
  store service do not pull in JupyterHub and tornado.

``TEMPLATE_DIR`` holds the login, request-account and enrolment pages; the
deployment puts it first in ``c.JupyterHub.template_paths`` so its
``login.html`` replaces the hub's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .registry import AccountRegistry

if TYPE_CHECKING:
    from .authenticator import CpmsAuthenticator

__all__ = ["AccountRegistry", "CpmsAuthenticator", "TEMPLATE_DIR"]

TEMPLATE_DIR = str(Path(__file__).with_name("templates"))


def __getattr__(name: str) -> Any:
    # the authenticator imports jupyterhub, which command-line tools should not pay for
    if name == "CpmsAuthenticator":
        from .authenticator import CpmsAuthenticator

        return CpmsAuthenticator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
