"""``python -m cpms_widgets.apps``: the ``cpms-review`` service (see :mod:`.launcher`)."""

from .launcher import main

main()
