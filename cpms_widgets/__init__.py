"""CPMS on the user side: the store client, forms and widgets for notebooks and Panel apps.

Nothing here holds a key, a database URL or a blob path: everything goes
through :class:`CaseStoreClient`, as the logged-in user, with their own token.
"""

from .client import CaseStoreClient, ClientSettings

__all__ = ["CaseStoreClient", "ClientSettings"]
