"""How user servers are kept apart from each other and from the store's secrets.

``CPMS_ISOLATION=none`` (the demo): every user server runs as the hub's own
OS user, in its own folder under the state folder. That is a demonstration
only — user code could read the key file — and the start-up banner says so.

``CPMS_ISOLATION=system-users`` (needs root): each hub user runs as a system
account of their own, ``cpms-<name>``, created on first spawn with a private
home (0700). The key file, the databases and the blob folder are 0600/0700
and owned by the hub's account, so notebook code cannot read them, nor
another user's files.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Unicode

from cpms_hub.settings import CpmsSettings

__all__ = ["SystemUserSpawner", "configure_isolation", "system_name"]


def system_name(hub_user: str) -> str:
    return f"cpms-{hub_user}"


class SystemUserSpawner(LocalProcessSpawner):
    """LocalProcessSpawner that runs each hub user as their own ``cpms-<name>`` account."""

    home_root = Unicode(
        "/home",
        config=True,
        help="Folder under which each user's private home is created (CPMS_HOME_ROOT).",
    )

    def _system_user(self) -> pwd.struct_passwd:
        name = system_name(self.user.name)
        try:
            return pwd.getpwnam(name)
        except KeyError:
            home = Path(self.home_root) / name
            subprocess.run(
                [
                    "useradd",
                    "--create-home",
                    "--home-dir",
                    str(home),
                    "--shell",
                    "/bin/bash",
                    "--user-group",
                    name,
                ],
                check=True,
                capture_output=True,
            )
            os.chmod(home, 0o700)
            return pwd.getpwnam(name)

    def make_preexec_fn(self, name: str):  # noqa: ANN201 - signature from LocalProcessSpawner
        return super().make_preexec_fn(self._system_user().pw_name)

    def user_env(self, env: dict) -> dict:
        entry = self._system_user()
        env["USER"] = entry.pw_name
        env["HOME"] = entry.pw_dir
        env["SHELL"] = entry.pw_shell
        return env

    def get_env(self) -> dict:
        env = super().get_env()
        return self.user_env(env)

    async def start(self):  # noqa: ANN201
        entry = self._system_user()
        self.notebook_dir = entry.pw_dir
        return await super().start()


def _demo_pre_spawn(spawner) -> None:  # noqa: ANN001
    folder = Path(spawner.notebook_dir.replace("{username}", spawner.user.name))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)


def configure_isolation(c, settings: CpmsSettings) -> None:  # noqa: ANN001
    mode = settings.isolation
    if mode == "system-users":
        if os.geteuid() != 0:
            sys.exit("CPMS_ISOLATION=system-users needs the hub to run as root")
        c.JupyterHub.spawner_class = SystemUserSpawner
        c.SystemUserSpawner.home_root = os.environ.get("CPMS_HOME_ROOT", "/home")
        print("CPMS: user servers run as their own system accounts (cpms-<name>).", file=sys.stderr)
    elif mode == "none":
        c.Spawner.notebook_dir = str(Path(settings.state_dir) / "users" / "{username}")
        c.Spawner.pre_spawn_hook = _demo_pre_spawn
        if os.geteuid() == 0:
            c.Spawner.args = ["--allow-root"]
        print(
            "\n*** CPMS DEMO MODE: every user server runs as this one OS user and could read "
            "the key file. For real isolation run the hub as root with "
            "CPMS_ISOLATION=system-users (or containers). ***\n",
            file=sys.stderr,
        )
    else:
        sys.exit(f"CPMS_ISOLATION must be 'none' or 'system-users', not {mode!r}")
