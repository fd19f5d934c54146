"""Panel apps of CPMS (review workspace pieces), served with ``panel serve``.

They call the store only through :class:`cpms_widgets.CaseStoreClient`, as the logged-in
user. Modules here import Panel; import them only where Panel runs.
"""

__all__: list[str] = []
