"""System-user isolation, tried for real: notebook code cannot reach the store's secrets.

A deployment with ``CPMS_ISOLATION=system-users`` runs as root; its user
servers run as ``cpms-iso-a`` and ``cpms-iso-b`` from a user environment those
accounts can execute (:mod:`tests.user_env`, ``CPMS_USER_ENV``). Code run in a
kernel of iso-a's server, exactly as a notebook cell would run it, tries to
read the key file, the databases, the blob folder and a file in iso-b's home:
each attempt must fail with ``PermissionError``, while the same kernel can
still call the store as iso-a with its own token.

The deployment's folder is left traversable (0755) on purpose, so that the
only barrier is the modes the state is created with (0700 folders, 0600
files) and the 0700 homes, not a private temporary folder around them.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest
import websocket

from cpms_hub.isolation import SINGLEUSER, system_name, unreachable_part
from tests.deployment import Deployment
from tests.user_env import build_user_env, user_env_problem

pytestmark = [pytest.mark.deployment]

USERS = ("iso-a", "iso-b")


def _why_not_root() -> str | None:
    if os.geteuid() != 0:
        return "system-user isolation needs root (the hub creates accounts and setuid's)"
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        return "useradd/userdel are missing"
    return user_env_problem()


_NOT_HERE = _why_not_root()


def needs_root(test):  # noqa: ANN001, ANN201
    """Marked ``root``; skipped, saying why, where accounts cannot be made or used."""
    return pytest.mark.root(pytest.mark.skipif(_NOT_HERE is not None, reason=str(_NOT_HERE))(test))


def test_demo_mode_says_so(deployment: Deployment) -> None:
    """The shared deployment runs with CPMS_ISOLATION unset: the banner warns it is a demo."""
    assert "DEMO MODE" in deployment.log_text()


def test_unreachable_part_names_the_private_folder(isolated_root: Path) -> None:
    private = isolated_root / "private"
    (private / "bin").mkdir(parents=True)
    script = private / "bin" / "tool"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    private.chmod(0o755)
    assert unreachable_part(script) is None
    private.chmod(0o700)
    assert f"cannot enter {private} " in unreachable_part(script)
    private.chmod(0o755)
    script.chmod(0o700)
    assert f"cannot run {script} " in unreachable_part(script)
    assert "does not exist" in unreachable_part(isolated_root / "missing")


# -- helpers -----------------------------------------------------------------


def _remove_accounts() -> None:
    for user in USERS:
        name = system_name(user)
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        subprocess.run(["userdel", "--remove", name], capture_output=True, timeout=60)


def _hub(dep: Deployment, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{dep.url}/hub/api",
        headers={"Authorization": f"token {token}"},
        timeout=30,
        trust_env=False,
    )


def _wait_ready(hub: httpx.Client, user: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = hub.get(f"/users/{user}").raise_for_status().json()
        server = model["servers"].get("")
        if server and server["ready"]:
            return server
        if not server or not server.get("pending"):
            pytest.fail(f"the server of {user} stopped while starting: {model}")
        time.sleep(0.5)
    pytest.fail(f"the server of {user} was not ready in {timeout}s")


def _server_process(dep: Deployment, user: str, server: dict) -> psutil.Process:
    pid = (server.get("state") or {}).get("pid")
    if pid:
        return psutil.Process(pid)
    for proc in psutil.Process(dep.proc.pid).children(recursive=True):
        try:
            if proc.environ().get("JUPYTERHUB_USER") == user and any(
                "jupyterhub-singleuser" in part for part in proc.cmdline()
            ):
                return proc
        except psutil.Error:
            continue
    pytest.fail(f"no jupyterhub-singleuser process for {user}")


def _run_in_kernel(dep: Deployment, user: str, token: str, code: str) -> tuple[str, list[str]]:
    """Start a kernel in ``user``'s server, run ``code`` in it; (stdout, errors)."""
    auth = {"Authorization": f"token {token}"}
    base = f"{dep.url}/user/{user}/api"
    kernel = httpx.post(f"{base}/kernels", headers=auth, json={}, timeout=60, trust_env=False)
    assert kernel.status_code == 201, kernel.text
    kernel_id = kernel.json()["id"]
    session = uuid.uuid4().hex
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{dep.port}/user/{user}/api/kernels/{kernel_id}/channels"
        f"?session_id={session}",
        header=[f"Authorization: token {token}"],
        timeout=60,
    )
    try:
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "session": session,
                        "username": user,
                        "version": "5.3",
                        "date": datetime.now(UTC).isoformat(),
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        out: list[str] = []
        errors: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id or msg["channel"] != "iopub":
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                (out if msg["content"]["name"] == "stdout" else errors).append(
                    msg["content"]["text"]
                )
            elif kind == "error":
                errors.append("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out), errors
        pytest.fail(f"the kernel did not finish in time; so far {out} {errors}")
    finally:
        ws.close()
        httpx.delete(f"{base}/kernels/{kernel_id}", headers=auth, timeout=30, trust_env=False)


#: run in iso-a's kernel; every attempt's outcome is printed as one JSON line
PROBE = """
import json, os
from pathlib import Path

def attempt(kind, path):
    try:
        if kind == "read":
            Path(path).read_bytes()
        elif kind == "list":
            os.listdir(path)
        else:
            Path(path).write_text("x")
        return "allowed"
    except Exception as e:
        return type(e).__name__

results = {{name: attempt(kind, path) for name, (kind, path) in {targets!r}.items()}}
results["uid"] = os.getuid()
from cpms_widgets import CaseStoreClient
with CaseStoreClient.from_env() as client:
    results["me"] = client.me()["name"]
print("RESULT " + json.dumps(results))
"""


@pytest.fixture
def isolated_root() -> Iterator[Path]:
    """A 0755 folder for the deployment and the homes, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="cpms-isolation-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- the test ------------------------------------------------------------------


@needs_root
def test_hub_refuses_an_environment_users_cannot_run(isolated_root: Path) -> None:
    """Without CPMS_USER_ENV, a private hub environment stops the hub at start, saying why."""
    hub_singleuser = Path(sys.executable).with_name(SINGLEUSER.name)
    if unreachable_part(hub_singleuser) is None:
        pytest.skip("the hub's own environment is usable by other accounts here")
    dep = Deployment(isolated_root / "deployment", extra_env={"CPMS_ISOLATION": "system-users"})
    dep.init()
    try:
        with pytest.raises(RuntimeError, match="hub exited"):
            dep.start(timeout=60)
    finally:
        dep.stop()
    log = dep.log_text()
    assert "user servers cannot run from the hub's environment" in log
    assert "CPMS_USER_ENV" in log


@needs_root
def test_user_code_cannot_read_state_or_other_homes(isolated_root: Path) -> None:
    user_env = build_user_env()
    homes = isolated_root / "homes"
    homes.mkdir(mode=0o755)
    dep = Deployment(
        isolated_root / "deployment",
        extra_env={
            "CPMS_ISOLATION": "system-users",
            "CPMS_USER_ENV": str(user_env),
            "CPMS_HOME_ROOT": str(homes),
        },
    )
    dep.root.mkdir(mode=0o755)
    # the hub's log (tokens are not in it, but it is no business of the users either)
    dep.log_path.touch(mode=0o600)
    _remove_accounts()  # left over from an interrupted run: their homes are gone
    try:
        dep.init()
        for user in USERS:
            dep.add_account(user, ("clinician",))
        dep.start()
        log = dep.log_text()
        assert "DEMO MODE" not in log
        assert "run as their own system accounts" in log

        settings = dep.settings()
        admin = _hub(dep, settings.admin_token_file.read_text().strip())
        for user in USERS:
            resp = admin.post(f"/users/{user}/server")
            assert resp.status_code in (201, 202), resp.text
        servers = {user: _wait_ready(admin, user) for user in USERS}

        # each server runs as its own account, never as root
        for user in USERS:
            entry = pwd.getpwnam(system_name(user))
            assert entry.pw_uid != 0
            proc = _server_process(dep, user, servers[user])
            assert proc.uids().real == proc.uids().effective == entry.pw_uid, (user, proc.uids())
            assert proc.gids().effective == entry.pw_gid
            assert Path(entry.pw_dir).parent == homes
            assert Path(entry.pw_dir).stat().st_mode & 0o777 == 0o700

        # something of iso-b's that iso-a must not see: readable by anyone but in a 0700 home
        home_b = Path(pwd.getpwnam(system_name("iso-b")).pw_dir)
        planted = home_b / "notes.txt"
        planted.write_text("iso-b's private notes\n")
        planted.chmod(0o644)
        entry_b = pwd.getpwnam(system_name("iso-b"))
        os.chown(planted, entry_b.pw_uid, entry_b.pw_gid)

        state = Path(settings.state_dir)
        db_file = Path(settings.db_url.removeprefix("sqlite:///"))
        for secret in (Path(settings.key_file), db_file):
            assert secret.stat().st_mode & 0o777 == 0o600, secret
        for folder in (state, Path(settings.key_file).parent, Path(settings.blob_dir)):
            assert folder.stat().st_mode & 0o777 == 0o700, folder
        targets = {
            "key_file": ("read", settings.key_file),
            "database": ("read", str(db_file)),
            "hub_database": ("read", str(state / "jupyterhub.sqlite")),
            "admin_token": ("read", str(settings.admin_token_file)),
            "blob_dir": ("list", settings.blob_dir),
            "state_dir": ("list", str(state)),
            "other_home_file": ("read", str(planted)),
            "other_home": ("list", str(home_b)),
            "write_other_home": ("write", str(home_b / "from-iso-a.txt")),
        }
        # controls: the probe does succeed where iso-a may go, so the refusals above come
        # from the modes of the state and of the homes, not from a folder around them
        public = dep.root / "public.txt"
        public.write_text("anyone may read this\n")
        public.chmod(0o644)
        home_a = Path(pwd.getpwnam(system_name("iso-a")).pw_dir)
        controls = {
            "public_file": ("read", str(public)),
            "deployment_dir": ("list", str(dep.root)),
            "write_own_home": ("write", str(home_a / "probe.txt")),
            "own_home": ("list", str(home_a)),
        }

        # a token of iso-a's that may open iso-a's server (script tokens may not)
        resp = admin.post(
            "/users/iso-a/tokens",
            json={"scopes": ["access:servers!user=iso-a"], "note": "isolation test"},
        )
        assert resp.status_code == 201, resp.text
        token_a = resp.json()["token"]

        stdout, errors = _run_in_kernel(
            dep, "iso-a", token_a, PROBE.format(targets=targets | controls)
        )
        assert not errors, errors
        line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
        results = json.loads(line.removeprefix("RESULT "))

        assert results["uid"] == pwd.getpwnam(system_name("iso-a")).pw_uid
        assert results["me"] == "iso-a"
        assert {name: results[name] for name in targets} == dict.fromkeys(
            targets, "PermissionError"
        )
        assert {name: results[name] for name in controls} == dict.fromkeys(controls, "allowed")
        assert not (home_b / "from-iso-a.txt").exists()
        assert (home_a / "probe.txt").stat().st_uid == pwd.getpwnam(system_name("iso-a")).pw_uid

        for user in USERS:
            resp = admin.delete(f"/users/{user}/server")
            assert resp.status_code in (202, 204), resp.text
        admin.close()
    finally:
        dep.stop()
        _remove_accounts()
