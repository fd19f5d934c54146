"""A real CPMS deployment for tests and benchmarks: hub, proxy and store service.

:class:`Deployment` initialises a state folder, creates accounts through the
store's own code, starts ``jupyterhub -f jupyterhub_config.py`` (which starts
configurable-http-proxy and the ``cpms-store`` and ``cpms-review`` services)
on free loopback ports, waits until the login page, the store and the review
apps answer through the proxy, and stops everything by PID: the hub first (it stops the proxy, the
service and the user servers), then any process it left behind, found from
the PIDs recorded while it ran. Nothing is ever killed by name.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pyotp

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

__all__ = [
    "Deployment",
    "TestAccount",
    "free_port",
    "running_deployment",
    "state_settings",
    "two_worker_deployment",
    "REPO",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TestAccount:
    name: str
    password: str
    totp_secret: str
    roles: tuple[str, ...]
    hospital: str
    network: str
    _last_code: str = field(default="", repr=False)

    def code(self) -> str:
        """A TOTP code not used before by this account (waits for the next step if needed)."""
        totp = pyotp.TOTP(self.totp_secret)
        code = totp.now()
        while code == self._last_code:
            time.sleep(0.5)
            code = totp.now()
        self._last_code = code
        return code


class Deployment:
    """One deployment in ``root``; use as a context manager or call start()/stop()."""

    def __init__(self, root: Path, *, extra_env: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.state_dir = self.root / "state"
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CPMS_", "JUPYTERHUB_"))},
            "CPMS_STATE_DIR": str(self.state_dir),
            "CPMS_PORT": str(self.port),
            "CPMS_PROXY_API_PORT": str(free_port()),
            "CPMS_HUB_PORT": str(free_port()),
            "CPMS_STORE_PORT": str(free_port()),
            "CPMS_REVIEW_PORT": str(free_port()),
            "CPMS_AUTH_REFRESH_SECONDS": "5",
            # known to the tests, so they can put an app of their own behind the proxy
            "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(32),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **(extra_env or {}),
        }
        self.accounts: dict[str, TestAccount] = {}
        self.proc: subprocess.Popen | None = None
        self._pids: set[int] = set()
        self.log_path = self.root / "hub.log"

    # -- URLs ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/services/cpms-store/api/v1"

    @property
    def review_url(self) -> str:
        """The Panel review apps (``cpms-review``) through the proxy."""
        return f"{self.url}/services/cpms-review/"

    @property
    def direct_api(self) -> str:
        """The store without the proxy in between (what user servers use)."""
        return f"http://127.0.0.1:{self.env['CPMS_STORE_PORT']}/services/cpms-store/api/v1"

    # -- state ---------------------------------------------------------------

    def settings(self):  # noqa: ANN201
        from cpms_hub.settings import CpmsSettings

        return CpmsSettings(
            state_dir=str(self.state_dir),
            db_url=self.env.get("CPMS_DB_URL", f"sqlite:///{self.state_dir / 'cpms.sqlite'}"),
            key_file=str(self.state_dir / "keys" / "keyring.json"),
            blob_dir=str(self.state_dir / "blobs"),
        )

    def admin(self, *args: str, input: str | None = None, check: bool = True):  # noqa: A002, ANN201
        return subprocess.run(
            [str(VENV_BIN / "cpms-admin"), *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def init(self) -> None:
        self.admin("init")

    def open_state(self):  # noqa: ANN201
        from cpms_hub.state import open_state

        return open_state(self.settings())

    def add_account(
        self,
        name: str,
        roles: tuple[str, ...],
        *,
        hospital: str = "Hospital A",
        network: str = "ERN-TEST",
        enrolled: bool = True,
    ) -> TestAccount:
        """An active account created through the registry (before or while the hub runs)."""
        from cpms_hub.domain import AccountRequest, Role

        secret = pyotp.random_base32()
        password = f"{name}-password-1234"
        state = self.open_state()
        try:
            req = AccountRequest(
                name,
                f"{name}@example.org",
                name.title(),
                hospital,
                network,
                frozenset(Role(r) for r in roles),
            )
            state.accounts.create_active(
                req, password, by="test", totp_secret=secret if enrolled else None
            )
        finally:
            state.close()
        account = TestAccount(name, password, secret, roles, hospital, network)
        self.accounts[name] = account
        if self.proc is not None:
            # the hub is running: put the account into its groups now
            self.admin("account", "sync", name)
        return account

    def token(self, name: str) -> str:
        return self.admin("token", name).stdout.strip()

    # -- the proxy's routing table ---------------------------------------------

    def add_proxy_route(self, prefix: str, target: str) -> None:
        """Send ``prefix`` (e.g. ``/services/review-test``) to ``target`` through the
        proxy, so a test's app is served at the same origin as the hub and the store.
        The hub leaves routes it did not make alone."""
        r = httpx.post(
            f"http://127.0.0.1:{self.env['CPMS_PROXY_API_PORT']}/api/routes{prefix}",
            json={"target": target},
            headers={"Authorization": f"token {self.env['CONFIGPROXY_AUTH_TOKEN']}"},
            trust_env=False,
            timeout=10,
        )
        r.raise_for_status()

    def remove_proxy_route(self, prefix: str) -> None:
        httpx.delete(
            f"http://127.0.0.1:{self.env['CPMS_PROXY_API_PORT']}/api/routes{prefix}",
            headers={"Authorization": f"token {self.env['CONFIGPROXY_AUTH_TOKEN']}"},
            trust_env=False,
            timeout=10,
        )

    # -- processes -------------------------------------------------------------

    def _ready(self) -> bool:
        """The hub's login page, the store and the review apps all answer (the hub starts
        its managed services one after another, so the second comes up a few seconds
        after the first)."""
        checks = (
            f"{self.api}/health",
            f"{self.url}/hub/login",
            f"{self.review_url}liveness",
        )
        return all(httpx.get(url, timeout=2, trust_env=False).status_code == 200 for url in checks)

    def start(self, timeout: float = 120) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(REPO / "jupyterhub_config.py")],
            cwd=str(self.root),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._record_children()
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if self._ready():
                    self._record_children()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"deployment not ready in {timeout}s; see {self.log_path}")

    def _record_children(self) -> None:
        if self.proc is None:
            return
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self._pids.add(child.pid)
        except psutil.NoSuchProcess:
            pass

    def _processes_running(self, marker: str) -> list[psutil.Process]:
        """Processes seen under the hub whose command line contains ``marker``, each
        followed by its own children."""
        self._record_children()
        found: list[psutil.Process] = []
        for pid in sorted(self._pids):
            try:
                p = psutil.Process(pid)
                if marker in " ".join(p.cmdline()):
                    found.append(p)
                    found.extend(p.children(recursive=True))
            except psutil.Error:
                continue
        return found

    def store_processes(self) -> list[psutil.Process]:
        """The store service's processes: its supervisor, then its worker processes (with
        ``CPMS_STORE_WORKERS`` above 1)."""
        return self._processes_running("cpms_hub.service")

    def proxy_processes(self) -> list[psutil.Process]:
        """configurable-http-proxy's process (node)."""
        return self._processes_running("configurable-http-proxy")

    def stop(self) -> None:
        if self.proc is None:
            return
        self._record_children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # whatever the hub did not stop, stop by the PIDs we saw it start
        for pid in sorted(self._pids):
            try:
                p = psutil.Process(pid)
                p.terminate()
                p.wait(timeout=10)
            except psutil.NoSuchProcess:
                continue
            except psutil.TimeoutExpired:
                p.kill()
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def state_settings(folder: Path, db_url: str | None = None):  # noqa: ANN201 - CpmsSettings
    """Settings whose state (database, key file, blobs) is all under ``folder``; SQLite
    in it unless ``db_url`` names another database."""
    from cpms_hub.settings import CpmsSettings

    return CpmsSettings(
        state_dir=str(folder),
        db_url=db_url or f"sqlite:///{folder / 'cpms.sqlite'}",
        key_file=str(folder / "keys" / "keyring.json"),
        blob_dir=str(folder / "blobs"),
    )


@contextmanager
def running_deployment(
    root: Path, accounts: dict[str, tuple[str, ...]], *, extra_env: dict[str, str] | None = None
) -> Iterator[Deployment]:
    """A deployment in ``root``, initialised, with ``accounts`` (name: roles), started;
    stopped afterwards."""
    with Deployment(root, extra_env=extra_env) as dep:
        dep.init()
        for name, roles in accounts.items():
            dep.add_account(name, roles)
        dep.start()
        yield dep


@contextmanager
def two_worker_deployment(
    prefix: str, accounts: dict[str, tuple[str, ...]]
) -> Iterator[Deployment]:
    """A deployment of its own whose store runs two worker processes, started with
    ``accounts`` (name: roles) in a temporary folder, stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        env = {"CPMS_STORE_WORKERS": "2", "CPMS_ACCESS_LOG": "0"}
        with running_deployment(root, accounts, extra_env=env) as dep:
            yield dep
    finally:
        shutil.rmtree(root, ignore_errors=True)
