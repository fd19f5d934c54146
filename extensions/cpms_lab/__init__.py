"""``cpms_lab``: the case desk in JupyterLab and Notebook 7.

One Python package holds both halves: the front end ``@cpms/lab`` (a
TypeScript JupyterLab extension built into ``labextension/`` and installed
into ``share/jupyter/labextensions/@cpms/lab``) and this server extension,
which gives that front end same-origin endpoints under ``/cpms/api/``. The
server extension talks to the case store with the server's own JupyterHub
token (as ``CaseStoreClient.from_env()`` does); the browser never holds a
token, only the Jupyter session that every handler requires.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__"]

__version__ = "0.1.0"

#: the npm name of the front end; JupyterLab finds it under this name
LABEXTENSION_NAME = "@cpms/lab"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "cpms_lab"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from .handlers import setup_handlers

    setup_handlers(server_app.web_app)
    server_app.log.info("cpms_lab: case desk endpoints at /cpms/api/")
