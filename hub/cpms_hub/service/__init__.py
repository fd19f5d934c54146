"""The case-store service (``cpms-store``): the one process that holds the keys.

See :mod:`.app` for the routes, :mod:`.auth` for how callers are identified
and :mod:`.errors` for the one error shape.
"""

from .app import ROUTES_DOC, create_app

__all__ = ["ROUTES_DOC", "create_app"]
