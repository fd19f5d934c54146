"""The CPMS deployment: JupyterHub, its proxy, the case store and the user servers.

The embedded default runs everything on this machine as local processes on
SQLite, with every state file under ``CPMS_STATE_DIR`` (``.cpms/`` in the
checkout). Every setting comes from a ``CPMS_*`` variable (see
:class:`cpms_hub.settings.CpmsSettings` and the README). Roles, scopes and
services are defined once in :mod:`cpms_hub.hubconfig`. Works with JupyterHub
5.5 and 6.x.

Run ``cpms-admin init`` before the first start (``make demo`` does).
"""

import os
import sys
from pathlib import Path

import jupyterhub

from cpms_hub import hubconfig
from cpms_hub.accounts import TEMPLATE_DIR
from cpms_hub.domain import AccountStatus, Role
from cpms_hub.isolation import configure_isolation
from cpms_hub.settings import REPO_ROOT, CpmsSettings
from cpms_hub.state import open_state

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

settings = CpmsSettings()
state_dir = Path(settings.state_dir)
if not Path(settings.key_file).exists() or not settings.admin_token_file.exists():
    sys.exit(f"CPMS state in {state_dir} is not initialised: run `cpms-admin init` first")

# -- the hub and its proxy, all files under the state folder -------------------
c.JupyterHub.bind_url = f"http://{settings.ip}:{settings.port}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.hub_port}"
c.JupyterHub.db_url = settings.hub_db_url
c.JupyterHub.cookie_secret_file = str(state_dir / "keys" / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state_dir / "jupyterhub.pid")
c.ConfigurableHTTPProxy.pid_file = str(state_dir / "jupyterhub-proxy.pid")
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
# glibc hands the freed top of the heap back to the kernel once it exceeds 128 KiB, so
# the proxy's 64 KiB socket read buffers were faulted in afresh all the time: about 300
# page faults per MiB proxied, 40 % of its CPU (benchmarks/dicom.py). Keeping up to
# 64 MiB of freed heap makes it a fault or so per MiB (set only for the proxy process).
PROXY_MALLOC = ("MALLOC_TRIM_THRESHOLD_=67108864",)
c.ConfigurableHTTPProxy.command = [
    "/usr/bin/env",
    *PROXY_MALLOC,
    os.environ.get("CPMS_PROXY_COMMAND")
    or str(REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"),
]
c.JupyterHub.cleanup_servers = True
c.JupyterHub.template_paths = [TEMPLATE_DIR]

# -- accounts: our authenticator, MFA on every login ---------------------------
c.JupyterHub.authenticator_class = "cpms_hub.accounts.authenticator.CpmsAuthenticator"
# a disabled account loses its hub session within this many seconds, and token
# requests to the hub are refused once its auth is stale (strict)
c.Authenticator.auth_refresh_age = int(os.environ.get("CPMS_AUTH_REFRESH_SECONDS", "30"))
if tuple(int(p) for p in jupyterhub.__version__.split(".")[:2]) >= (6, 1):
    # new in 6.1; older hubs always behave strictly
    c.Authenticator.auth_refresh_strict = True

# -- roles, scopes, services ---------------------------------------------------
hubconfig.configure(c, settings)

# groups follow the accounts table; the store keeps them in step while the hub runs
_state = open_state(settings)
try:
    _accounts = _state.accounts.list()
finally:
    _state.close()
c.JupyterHub.load_groups = {
    role.value: {"users": [a.name for a in _accounts if a.is_active and role in a.roles]}
    for role in Role
}
c.Authenticator.blocked_users = {a.name for a in _accounts if a.status is AccountStatus.DISABLED}

# -- user servers --------------------------------------------------------------
c.Spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
c.Spawner.default_url = "/lab"
c.Spawner.http_timeout = 60
c.Spawner.start_timeout = 120
c.Spawner.environment = {
    # straight to the service on loopback: user code never sees a key, a DB URL or a path
    "CPMS_STORE_URL": hubconfig.store_url(settings),
}
configure_isolation(c, settings)
