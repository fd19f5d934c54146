"""Run the store service (the hub starts it as the managed service ``cpms-store``).

Reads the deployment from ``CPMS_*`` variables and the hub's from the
``JUPYTERHUB_*`` variables the hub sets for managed services.

``CPMS_STORE_WORKERS`` (default 1) runs that many worker processes on the one
port (uvicorn's supervisor hands them the listening socket). One Python process
uses at most one core for its Python code, so a second worker lets the store
use a second core. It is sound because nothing a request relies on lives only
in one process's memory: accounts, cases, keys and audit entries are in the
database (SQLite writers of all processes queue on one ``flock``, see
:mod:`cpms_hub.store.database`; PostgreSQL orders them itself), uploads are
locked with ``flock`` too, grants are keyed from the keyring, and caches
(unwrapped data keys, tiles, the hub's answers about tokens) are only caches.
The e-mail sender runs once, in the supervising process.
"""

from __future__ import annotations

import gc
import logging
import os
import threading

import uvicorn
from fastapi import FastAPI
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
    # The ontologies and the analyses' tables are a few hundred thousand objects that
    # live as long as the process. Left to the collector, every full collection walks
    # them all (tens of milliseconds, with every request waiting); frozen, the
    # collector skips them, as it should: they never become garbage.
    gc.collect()
    gc.freeze()


def _workers() -> int:
    raw = os.environ.get("CPMS_STORE_WORKERS", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 16:
        raise SystemExit("CPMS_STORE_WORKERS must be a whole number from 1 to 16")
    return int(raw)


def build_app() -> FastAPI:
    """The service's app over the deployment's state (once per worker process)."""
    state = open_state(CpmsSettings())
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
    return app


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)s %(asctime)s %(name)s] %(message)s"
    )
    settings = CpmsSettings()
    workers = _workers()
    # notification e-mails and deadline reminders, off the request path, in one process
    Mailer(open_state(settings).review, settings).start()
    options = {
        "host": "127.0.0.1",
        "port": settings.store_port,
        "log_level": "info",
        # the access log shows method, path and status: paths carry only random ids
        "access_log": os.environ.get("CPMS_ACCESS_LOG", "1") == "1",
        "server_header": False,
    }
    if workers == 1:
        uvicorn.run(build_app(), **options)
    else:
        uvicorn.run(
            "cpms_hub.service.__main__:build_app",
            factory=True,
            workers=workers,
            **options,
        )


if __name__ == "__main__":
    main()
