"""How user servers are kept apart from each other and from the store's secrets.

``CPMS_ISOLATION=none`` (the demo): every user server runs as the hub's own
OS user, in its own folder under the state folder. That is a demonstration
only — user code could read the key file — and the start-up banner says so.

``CPMS_ISOLATION=system-users`` (needs root): each hub user runs as a system
account of their own, ``cpms-<name>``, created on first spawn with a private
home (0700). The key file, the databases and the blob folder are 0600/0700
and owned by the hub's account, so notebook code cannot read them, nor
another user's files.

Those accounts must be able to execute the Python environment the user
servers run from. ``CPMS_USER_ENV`` names that environment (a virtualenv or
prefix readable by everyone, e.g. ``/opt/cpms-user``, holding
``bin/jupyterhub-singleuser``, ipykernel and the user side of CPMS); left
empty, the hub's own environment is used, which works only if no folder on
the way to its interpreter is private (a pyenv under ``/root`` is). The hub
checks this when it starts and again before each spawn, and says which
folder is in the way.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Unicode, default

from cpms_hub.settings import REPO_ROOT, CpmsSettings

__all__ = [
    "DemoSpawner",
    "SINGLEUSER",
    "SystemUserSpawner",
    "configure_isolation",
    "ensure_system_user",
    "system_name",
    "unreachable_part",
]

#: the command a user server is started with, relative to its environment's prefix
SINGLEUSER = Path("bin") / "jupyterhub-singleuser"


def system_name(hub_user: str) -> str:
    return f"cpms-{hub_user}"


def ensure_system_user(hub_user: str, home_root: str | os.PathLike[str]) -> pwd.struct_passwd:
    """The ``cpms-<name>`` account of ``hub_user``, created (with a 0700 home) if missing."""
    name = system_name(hub_user)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        home = Path(home_root) / name
        Path(home_root).mkdir(parents=True, exist_ok=True, mode=0o755)
        result = subprocess.run(
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
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"useradd {name} failed: {result.stderr.strip()}") from None
        entry = pwd.getpwnam(name)
    home = Path(entry.pw_dir)
    if not home.is_dir():
        # the account outlived its home (restored /etc/passwd, wiped volume): make a new one
        home.mkdir(parents=True, mode=0o700)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)
    return entry


def _may(st: os.stat_result, uid: int | None, gids: set[int], want: int) -> bool:
    """Whether ``uid``/``gids`` (``None``: any other account) has the ``want`` rwx bits (0-7)."""
    if uid == 0:
        return True
    if uid is not None and st.st_uid == uid:
        shift = 6
    elif st.st_gid in gids:
        shift = 3
    else:
        shift = 0
    return (st.st_mode >> shift) & want == want


def _walk(path: Path) -> list[Path]:
    """``path``, its folders and, for symlinks on the way, their targets."""
    seen: list[Path] = []
    todo = [Path(os.path.abspath(path))]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        seen.extend(q for q in p.parents if q not in seen)
        for q in (p, *p.parents):
            if q.is_symlink():
                todo.append(q.resolve())
    return seen


def _interpreter(script: Path) -> Path | None:
    """The interpreter named by ``script``'s ``#!`` line, if it has one."""
    try:
        with script.open("rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    return Path(words[0]) if words else None


def unreachable_part(
    command: str | os.PathLike[str], entry: pwd.struct_passwd | None = None
) -> str | None:
    """Why the account ``entry`` (``None``: any unprivileged account) cannot run ``command``.

    Checks every folder on the way to the command, to its ``#!`` interpreter and
    to their symlink targets; returns ``None`` when nothing is in the way, or a
    sentence naming the first obstacle.
    """
    uid = entry.pw_uid if entry else None
    gids = set(os.getgrouplist(entry.pw_name, entry.pw_gid)) if entry else set()
    who = entry.pw_name if entry else "an unprivileged account"
    found = shutil.which(str(command))
    if found is None:
        return f"{command} does not exist or is not executable"
    targets = [Path(found)]
    interpreter = _interpreter(Path(found))
    if interpreter is not None:
        targets.append(interpreter)
    for target in targets:
        for part in _walk(target):
            try:
                st = part.stat()
            except OSError as e:
                return f"{part} cannot be examined ({e.strerror})"
            if stat.S_ISDIR(st.st_mode):
                want = 0o1  # search the folder
            else:
                want = 0o5 if target == targets[0] else 0o1  # a script is read, a binary run
            if not _may(st, uid, gids, want):
                return (
                    f"{who} cannot {'enter' if stat.S_ISDIR(st.st_mode) else 'run'} {part} "
                    f"(mode {stat.filemode(st.st_mode)}, owner uid {st.st_uid}), on the way to "
                    f"{target}"
                )
    return None


def _hint() -> str:
    return (
        "set CPMS_USER_ENV to an environment every account can run (e.g. "
        "`python3 -m venv /opt/cpms-user && /opt/cpms-user/bin/pip install -c constraints.txt "
        "jupyterhub jupyterlab ipykernel httpx ipywidgets` plus the CPMS package)"
    )


class SystemUserSpawner(LocalProcessSpawner):
    """LocalProcessSpawner that runs each hub user as their own ``cpms-<name>`` account."""

    home_root = Unicode(
        "/home",
        config=True,
        help="Folder under which each user's private home is created (CPMS_HOME_ROOT).",
    )

    user_env_dir = Unicode(
        config=True,
        help=(
            "Prefix of the Python environment user servers run from (CPMS_USER_ENV): a virtualenv "
            "or installation every cpms-<name> account can read and execute, holding "
            "bin/jupyterhub-singleuser, ipykernel and the user side of CPMS. Its bin/ comes first "
            "on the servers' PATH, so kernels use its Python too. Empty: run "
            "Spawner.cmd from the hub's own environment, which must then be accessible to "
            "those accounts."
        ),
    )

    @default("user_env_dir")
    def _user_env_dir_default(self) -> str:
        return os.environ.get("CPMS_USER_ENV", "")

    def _system_user(self) -> pwd.struct_passwd:
        return ensure_system_user(self.user.name, self.home_root)

    def _server_cmd(self, entry: pwd.struct_passwd) -> list[str]:
        cmd = list(self.cmd or ["jupyterhub-singleuser"])
        if self.user_env_dir:
            cmd = [str(Path(self.user_env_dir) / SINGLEUSER), *cmd[1:]]
        problem = unreachable_part(cmd[0], entry)
        if problem:
            raise RuntimeError(f"cannot start the server of {self.user.name}: {problem}; {_hint()}")
        return cmd

    def make_preexec_fn(self, name: str):  # noqa: ANN201 - signature from LocalProcessSpawner
        return super().make_preexec_fn(self._system_user().pw_name)

    def user_env(self, env: dict) -> dict:
        entry = self._system_user()
        env["USER"] = entry.pw_name
        env["HOME"] = entry.pw_dir
        env["SHELL"] = entry.pw_shell
        if self.user_env_dir:
            prefix = Path(self.user_env_dir)
            hub_bin = str(Path(sys.executable).parent)
            rest = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p and p != hub_bin]
            env["PATH"] = os.pathsep.join([str(prefix / "bin"), *rest])
            env["VIRTUAL_ENV"] = str(prefix)
        return env

    def get_env(self) -> dict:
        env = super().get_env()
        return self.user_env(env)

    async def start(self):  # noqa: ANN201
        entry = self._system_user()
        self.cmd = self._server_cmd(entry)
        self.notebook_dir = entry.pw_dir
        return await super().start()


class DemoSpawner(LocalProcessSpawner):
    """Every server runs as the hub's own OS user, in a folder of its own (the demo).

    Hub users are not system accounts here, so the user switch of
    LocalProcessSpawner is skipped. Each new folder gets copies of the worked
    notebooks so that a first login has something to open.
    """

    def make_preexec_fn(self, name: str):  # noqa: ANN201 - signature from LocalProcessSpawner
        return None

    def _folder(self) -> Path:
        return Path(self.format_string(self.notebook_dir))

    def user_env(self, env: dict) -> dict:
        env["USER"] = self.user.name
        env["HOME"] = str(self._folder())
        return env

    async def start(self):  # noqa: ANN201
        folder = self._folder()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        examples = folder / "notebooks"
        if not examples.exists():
            shutil.copytree(REPO_ROOT / "notebooks", examples)
        return await super().start()


def _check_user_env(c) -> None:  # noqa: ANN001
    """Refuse to start when no user server could run: say which folder is in the way."""
    cfg = c.SystemUserSpawner
    env_dir = cfg.user_env_dir if "user_env_dir" in cfg else os.environ.get("CPMS_USER_ENV", "")
    if env_dir:
        command, source = Path(env_dir) / SINGLEUSER, "CPMS_USER_ENV"
    else:
        cmd = c.Spawner.cmd if "cmd" in c.Spawner else ["jupyterhub-singleuser"]
        command, source = (cmd if isinstance(cmd, str) else cmd[0]), "the hub's environment"
    problem = unreachable_part(command)
    if problem:
        sys.exit(
            f"CPMS_ISOLATION=system-users: user servers cannot run from {source}: "
            f"{problem}; {_hint()}"
        )


def configure_isolation(c, settings: CpmsSettings) -> None:  # noqa: ANN001
    mode = settings.isolation
    if mode == "system-users":
        if os.geteuid() != 0:
            sys.exit("CPMS_ISOLATION=system-users needs the hub to run as root")
        c.JupyterHub.spawner_class = SystemUserSpawner
        c.SystemUserSpawner.home_root = os.environ.get("CPMS_HOME_ROOT", "/home")
        _check_user_env(c)
        print("CPMS: user servers run as their own system accounts (cpms-<name>).", file=sys.stderr)
    elif mode == "none":
        c.JupyterHub.spawner_class = DemoSpawner
        c.Spawner.notebook_dir = str(Path(settings.state_dir) / "users" / "{username}")
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
