"""The built wheel carries the case desk whole: front end and server extension, both enabled.

Builds the project's wheel (hatchling with hatch-jupyter-builder; the front end
is rebuilt only if it is missing or older than its sources), installs it into a
throw-away virtual environment and asks Jupyter there — not in the development
environment — what it has. The throw-away environment borrows the development
environment's installed dependencies through a ``.pth`` line, so nothing is
downloaded; the editable install of the checkout is not visible in it (a plain
``.pth`` path does not run the ``.pth`` files it contains), so ``cpms_lab``
comes from the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, env: dict | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--quiet", "-w", out, REPO,
    )  # fmt: skip
    (built,) = out.glob("cpms-*.whl")
    return built


def test_wheel_installs_the_case_desk_enabled(wheel: Path, tmp_path: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    data = "cpms-0.1.0.data/data"
    assert f"{data}/share/jupyter/labextensions/@cpms/lab/package.json" in names
    assert f"{data}/share/jupyter/labextensions/@cpms/lab/static/style.js" in names
    assert any(
        n.startswith(f"{data}/share/jupyter/labextensions/@cpms/lab/static/remoteEntry.")
        for n in names
    )
    assert f"{data}/etc/jupyter/jupyter_server_config.d/cpms_lab.json" in names
    assert "cpms_lab/templates/01-submit-a-case.ipynb" in names
    assert not any("/lib/" in n and n.endswith(".ts") for n in names)  # sources stay out

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    )
    (site / "_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet", wheel)

    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),  # no user-level Jupyter configuration
        "LANG": "C.UTF-8",
    }
    where = _run(python, "-c", "import cpms_lab; print(cpms_lab.__file__)", env=env)
    assert where.startswith(str(site)), where

    servers = _run(python, "-m", "jupyter_server.extension.serverextension", "list", env=env)
    assert "cpms_lab enabled" in servers.replace("\x1b[32m", "").replace("\x1b[0m", ""), servers
    assert str(venv / "etc" / "jupyter") in servers

    labs = _run(python, "-m", "jupyterlab.labextensions", "list", env=env)
    plain = labs.replace("\x1b[32m", "").replace("\x1b[0m", "")
    assert "@cpms/lab v0.1.0 enabled OK (python, cpms)" in plain, labs
    assert str(venv / "share" / "jupyter" / "labextensions") in plain
