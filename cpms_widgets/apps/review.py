"""The page ``panel serve`` runs for every browser session of the ``cpms-review`` service.

``/services/cpms-review/`` shows the signed-in person's home (inbox; the
coordinator's dashboard for coordinators); ``?case=<id>`` opens the review
workspace of one case. Everything runs as the user logged in through the hub.
"""

from cpms_widgets.apps.home import ReviewHome

ReviewHome.for_session().servable(title="CPMS review")
