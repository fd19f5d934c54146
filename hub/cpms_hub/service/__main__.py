"""Run the store service (the hub starts it as the managed service ``cpms-store``).

Reads the deployment from ``CPMS_*`` variables and the hub's from the
``JUPYTERHUB_*`` variables the hub sets for managed services.
"""

from __future__ import annotations

import logging
import os
import threading

import uvicorn
from jupyterhub.services.auth import HubOAuth

from cpms_hub import vocab
from cpms_hub.hubapi import HubApi
from cpms_hub.settings import CpmsSettings
from cpms_hub.state import open_state

from .app import create_app
from .mailer import Mailer


def _warm_up() -> None:
    from cpms_hub import analysis

    vocab.warm_up()
    analysis.warm_up()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)s %(asctime)s %(name)s] %(message)s"
    )
    settings = CpmsSettings()
    state = open_state(settings)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/cpms-store/")
    # 60 s: the hub is asked about a token at most once a minute; account status is
    # re-read from our own table on every request, so disabling still acts at once
    hub_auth = HubOAuth(cache_max_age=60)
    hub_api = None
    if os.environ.get("JUPYTERHUB_API_URL") and os.environ.get("JUPYTERHUB_API_TOKEN"):
        hub_api = HubApi(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    app = create_app(state, hub_auth, service_prefix=prefix, hub_api=hub_api)
    # the ontologies load in about a second; do it now so the first keystroke is fast,
    # then the analyses' tables (IC, depths, regions: a few seconds more)
    threading.Thread(target=_warm_up, name="cpms-vocab-warm-up", daemon=True).start()
    # notification e-mails and deadline reminders, off the request path
    Mailer(state.review, settings).start()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=settings.store_port,
        log_level="info",
        # the access log shows method, path and status: paths carry only random ids
        access_log=os.environ.get("CPMS_ACCESS_LOG", "1") == "1",
        server_header=False,
    )


if __name__ == "__main__":
    main()
