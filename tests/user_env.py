"""A Python environment user servers can run from under system-user isolation.

The test venv's interpreter may live where other accounts cannot go (a pyenv
under ``/root``), so the ``cpms-<name>`` accounts get an environment of their
own, as a production deployment would (``CPMS_USER_ENV``): a virtualenv of
the system Python with JupyterHub, JupyterLab and ipykernel pinned by
``constraints.txt``, plus the checkout's user side (``cpms_widgets`` and
``cpms_hub.domain``) through a ``.pth`` file, as an editable install would.

It is built once and cached, world-readable, in
``/var/cache/cpms-test-userenv-<hash>`` (``CPMS_TEST_USERENV_CACHE`` changes the
folder), the hash covering the constraints, the package list, the system
Python and the checkout's path; a ``.complete`` marker tells a finished build
from an interrupted one, and a lock keeps parallel runs from building twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.deployment import REPO

__all__ = ["SYSTEM_PYTHON", "USER_PACKAGES", "build_user_env", "user_env_problem"]

SYSTEM_PYTHON = Path("/usr/bin/python3")
#: what a user server needs: the server, a kernel, the store client's HTTP library, widgets
USER_PACKAGES = ("jupyterhub", "jupyterlab", "ipykernel", "httpx", "ipywidgets")
#: pins of constraints.txt left out: they need a newer Python than Debian 12's 3.11.2
#: (soupsieve 4.x: Requires-Python >=3.11.5); pip picks the newest version that fits
UNPINNED = frozenset({"soupsieve"})
#: folders of the checkout on the user env's path (the ``dev-mode-dirs`` of pyproject.toml)
CHECKOUT_DIRS = (REPO / "hub", REPO / "extensions", REPO)


def user_env_problem() -> str | None:
    """Why no user environment can be built here, or ``None``."""
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} is missing (apt-get install python3 python3-venv)"
    probe = subprocess.run(
        [
            str(SYSTEM_PYTHON),
            "-c",
            "import sys, venv, ensurepip; print(sys.version_info >= (3, 11))",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"{SYSTEM_PYTHON} cannot make virtualenvs (apt-get install python3-venv)"
    if probe.stdout.strip() != "True":
        return f"{SYSTEM_PYTHON} is older than 3.11"
    return None


def _key() -> str:
    version = subprocess.run(
        [str(SYSTEM_PYTHON), "-VV"], capture_output=True, text=True, check=True
    ).stdout
    h = hashlib.sha256()
    for part in (
        _constraints().encode(),
        " ".join(USER_PACKAGES).encode(),
        version.encode(),
        str(REPO).encode(),
    ):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _constraints() -> str:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return "".join(
        f"{line}\n" for line in lines if line.split("==")[0].strip().lower() not in UNPINNED
    )


def _site_packages(prefix: Path) -> Path:
    out = subprocess.run(
        [
            str(prefix / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Path(out.strip())


def build_user_env() -> Path:
    """The cached user environment, built first if needed (a minute or two, once)."""
    cache = Path(os.environ.get("CPMS_TEST_USERENV_CACHE", "/var/cache"))
    cache.mkdir(parents=True, exist_ok=True)
    prefix = cache / f"cpms-test-userenv-{_key()}"
    marker = prefix / ".complete"
    if marker.exists():
        return prefix
    with open(cache / f"{prefix.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return prefix
        shutil.rmtree(prefix, ignore_errors=True)
        old_umask = os.umask(0o022)
        try:
            subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(prefix)], check=True)
            constraints = prefix / "constraints.txt"
            constraints.write_text(_constraints())
            pip = subprocess.run(
                [
                    str(prefix / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "-c",
                    str(constraints),
                    *USER_PACKAGES,
                ],
                capture_output=True,
                text=True,
            )
            if pip.returncode != 0:
                raise RuntimeError(
                    f"building the user environment {prefix} failed:\n{pip.stderr[-4000:]}"
                )
            pth = _site_packages(prefix) / "cpms-checkout.pth"
            pth.write_text("".join(f"{d}\n" for d in CHECKOUT_DIRS))
        finally:
            os.umask(old_umask)
        prefix.chmod(0o755)
        marker.write_text("ok\n")
    return prefix
