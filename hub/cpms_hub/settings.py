"""Deployment settings shared by the hub, the store service and ``cpms-admin``.

Every setting is a traitlet with help text and a ``CPMS_*`` environment
default, so one environment describes one deployment: ``jupyterhub_config.py``
reads it for the hub, the hub passes it on to the ``cpms-store`` service, and
``cpms-admin`` reads the same variables. All state lives under
``CPMS_STATE_DIR`` unless a setting points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from traitlets import Integer, Unicode, default
from traitlets.config import Configurable

__all__ = ["CpmsSettings", "REPO_ROOT"]

#: the checkout (the hub and the demo run from it)
REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(name: str, fallback: str) -> str:
    return os.environ.get(name, "") or fallback


class CpmsSettings(Configurable):
    """Where the deployment keeps its state and how its parts find each other."""

    state_dir = Unicode(
        help="Folder for all state: databases, key file, blobs, hub files (CPMS_STATE_DIR).",
    ).tag(config=True)

    @default("state_dir")
    def _state_dir_default(self) -> str:
        return str(Path(_env("CPMS_STATE_DIR", str(REPO_ROOT / ".cpms"))).resolve())

    db_url = Unicode(
        help="SQLAlchemy URL of the case store (CPMS_DB_URL); default SQLite in the state folder.",
    ).tag(config=True)

    @default("db_url")
    def _db_url_default(self) -> str:
        return _env("CPMS_DB_URL", f"sqlite:///{Path(self.state_dir) / 'cpms.sqlite'}")

    key_file = Unicode(
        help="Key file holding the keyring of key-encryption keys (CPMS_KEY_FILE), mode 0600.",
    ).tag(config=True)

    @default("key_file")
    def _key_file_default(self) -> str:
        return _env("CPMS_KEY_FILE", str(Path(self.state_dir) / "keys" / "keyring.json"))

    blob_dir = Unicode(
        help="Folder of the local blob backend (CPMS_BLOB_DIR): encrypted segments only.",
    ).tag(config=True)

    @default("blob_dir")
    def _blob_dir_default(self) -> str:
        return _env("CPMS_BLOB_DIR", str(Path(self.state_dir) / "blobs"))

    hub_db_url = Unicode(
        help="SQLAlchemy URL of JupyterHub's own database (CPMS_HUB_DB_URL).",
    ).tag(config=True)

    @default("hub_db_url")
    def _hub_db_url_default(self) -> str:
        return _env("CPMS_HUB_DB_URL", f"sqlite:///{Path(self.state_dir) / 'jupyterhub.sqlite'}")

    ip = Unicode(help="Address the proxy listens on (CPMS_IP).").tag(config=True)

    @default("ip")
    def _ip_default(self) -> str:
        return _env("CPMS_IP", "127.0.0.1")

    port = Integer(help="Public port of the deployment (CPMS_PORT).").tag(config=True)

    @default("port")
    def _port_default(self) -> int:
        return int(_env("CPMS_PORT", "8000"))

    hub_port = Integer(help="Port of the hub's internal API (CPMS_HUB_PORT).").tag(config=True)

    @default("hub_port")
    def _hub_port_default(self) -> int:
        return int(_env("CPMS_HUB_PORT", str(self.port + 81)))

    store_port = Integer(help="Port the cpms-store service listens on (CPMS_STORE_PORT).").tag(
        config=True
    )

    @default("store_port")
    def _store_port_default(self) -> int:
        return int(_env("CPMS_STORE_PORT", str(self.port + 82)))

    review_port = Integer(
        help="Port the cpms-review service (the Panel review apps) listens on (CPMS_REVIEW_PORT).",
    ).tag(config=True)

    @default("review_port")
    def _review_port_default(self) -> int:
        return int(_env("CPMS_REVIEW_PORT", str(self.port + 83)))

    review_origins = Unicode(
        help=(
            "Comma-separated host:port values browsers use to reach the deployment, "
            "allowed as websocket origins of the review apps (CPMS_REVIEW_ORIGINS); "
            "default the public address."
        ),
    ).tag(config=True)

    @default("review_origins")
    def _review_origins_default(self) -> str:
        hosts = [f"{self.ip}:{self.port}"]
        if self.ip == "127.0.0.1":
            hosts.append(f"localhost:{self.port}")
        return _env("CPMS_REVIEW_ORIGINS", ",".join(hosts))

    proxy_api_port = Integer(help="Port of the proxy's REST API (CPMS_PROXY_API_PORT).").tag(
        config=True
    )

    @default("proxy_api_port")
    def _proxy_api_port_default(self) -> int:
        return int(_env("CPMS_PROXY_API_PORT", str(self.port + 1)))

    isolation = Unicode(
        help=(
            "How user servers are separated (CPMS_ISOLATION): 'none' runs every server as the "
            "hub's own OS user (a demo); 'system-users' runs each user as their own system "
            "account (needs root), with key files readable by the service only."
        ),
    ).tag(config=True)

    @default("isolation")
    def _isolation_default(self) -> str:
        return _env("CPMS_ISOLATION", "none")

    max_body_bytes = Integer(
        help="Largest JSON request body the store accepts, in bytes (CPMS_MAX_BODY_BYTES).",
    ).tag(config=True)

    @default("max_body_bytes")
    def _max_body_default(self) -> int:
        return int(_env("CPMS_MAX_BODY_BYTES", str(256 * 1024)))

    smtp_host = Unicode(
        help=(
            "SMTP server for notification e-mails (CPMS_SMTP_HOST); empty: no e-mail, "
            "in-app notifications only. E-mails carry a link, never patient data."
        ),
    ).tag(config=True)

    @default("smtp_host")
    def _smtp_host_default(self) -> str:
        return _env("CPMS_SMTP_HOST", "")

    smtp_port = Integer(help="Port of the SMTP server (CPMS_SMTP_PORT).").tag(config=True)

    @default("smtp_port")
    def _smtp_port_default(self) -> int:
        return int(_env("CPMS_SMTP_PORT", "25"))

    smtp_sender = Unicode(help="From address of notification e-mails (CPMS_SMTP_SENDER).").tag(
        config=True
    )

    @default("smtp_sender")
    def _smtp_sender_default(self) -> str:
        return _env("CPMS_SMTP_SENDER", "cpms@localhost")

    smtp_starttls = Unicode(
        help="'1' to require STARTTLS before sending (CPMS_SMTP_STARTTLS); default '0'.",
    ).tag(config=True)

    @default("smtp_starttls")
    def _smtp_starttls_default(self) -> str:
        return _env("CPMS_SMTP_STARTTLS", "0")

    smtp_user = Unicode(help="SMTP login name, if the server wants one (CPMS_SMTP_USER).").tag(
        config=True
    )

    @default("smtp_user")
    def _smtp_user_default(self) -> str:
        return _env("CPMS_SMTP_USER", "")

    smtp_password_file = Unicode(
        help="File holding the SMTP password (CPMS_SMTP_PASSWORD_FILE), mode 0600.",
    ).tag(config=True)

    @default("smtp_password_file")
    def _smtp_password_file_default(self) -> str:
        return _env("CPMS_SMTP_PASSWORD_FILE", "")

    smtp_timeout = Integer(
        help="Seconds the background sender waits on the SMTP server (CPMS_SMTP_TIMEOUT)."
    ).tag(config=True)

    @default("smtp_timeout")
    def _smtp_timeout_default(self) -> int:
        return int(_env("CPMS_SMTP_TIMEOUT", "10"))

    mail_interval = Integer(
        help="Seconds between the background sender's passes over the outbox "
        "(CPMS_MAIL_INTERVAL); deadline reminders are checked on the same beat.",
    ).tag(config=True)

    @default("mail_interval")
    def _mail_interval_default(self) -> int:
        return int(_env("CPMS_MAIL_INTERVAL", "5"))

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)

    @property
    def public_url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    @property
    def admin_token_file(self) -> Path:
        """Token of the ``cpms-admin`` service, used by the command line to reach the hub."""
        return self.state_path / "keys" / "admin-service.token"

    @property
    def store_token_file(self) -> Path:
        return self.state_path / "keys" / "store-service.token"
