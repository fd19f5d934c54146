"""``cpms-admin account create --expertise`` and ``cpms-admin account expertise``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cpms_hub.settings import CpmsSettings
from cpms_hub.state import open_state

ADMIN = Path(sys.executable).parent / "cpms-admin"


def admin(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ADMIN), *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_expertise_from_the_command_line(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CPMS_", "JUPYTERHUB_"))},
        "CPMS_STATE_DIR": str(tmp_path / "state"),
        # no hub runs: group sync is skipped
        "CPMS_HUB_API_URL": "",
    }
    assert admin(env, "init").returncode == 0
    done = admin(
        env,
        "account",
        "create",
        "dr-expert",
        "--email=dr-expert@example.org",
        "--full-name=Dr Expert",
        "--hospital=H",
        "--network=ERN-X",
        "--roles=panel-member",
        "--expertise=ORPHA:558, cardiology",
        "--password-stdin",
        stdin="a long enough password 1234\n",
    )
    assert done.returncode == 0, done.stderr
    done = admin(env, "account", "expertise", "dr-expert", "--timezone", "Europe/Rome")
    assert done.returncode == 0 and "ORPHA:558, cardiology (Europe/Rome)" in done.stdout
    bad = admin(env, "account", "expertise", "dr-expert", "--timezone", "Nowhere/Town")
    assert bad.returncode == 1 and "timezone" in bad.stderr
    state = open_state(CpmsSettings(state_dir=str(tmp_path / "state")))
    try:
        account = state.accounts.get("dr-expert")
    finally:
        state.close()
    assert account.expertise == ("ORPHA:558", "cardiology") and account.timezone == "Europe/Rome"
