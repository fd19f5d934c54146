"""The shape of the code base: import direction, documentation of routes and settings.

The design fixes who may import whom (domain imports only the standard
library; user-side code imports only ``cpms_hub.domain`` of the hub side);
every route of the store API and every ``CPMS_*`` setting must be documented
in the README.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from cpms_hub.service import ROUTES_DOC
from cpms_hub.settings import CpmsSettings

REPO = Path(__file__).resolve().parents[1]
HUB = REPO / "hub" / "cpms_hub"
README = (REPO / "README.md").read_text()
STDLIB = set(sys.stdlib_module_names)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                rel = (
                    path.relative_to(REPO / "hub")
                    if HUB in path.parents
                    else path.relative_to(
                        REPO / ("extensions" if "extensions" in path.parts else "")
                    )
                )
                base = rel.with_suffix("").parts[: -node.level]
                found.add(".".join((*base, node.module or "")).rstrip("."))
            elif node.module:
                found.add(node.module)
    return found


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", _modules(HUB / "domain"), ids=lambda p: p.name)
def test_domain_imports_only_the_standard_library(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        assert top in STDLIB or name.startswith("cpms_hub.domain"), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", _modules(HUB / "policy"), ids=lambda p: p.name)
def test_policy_imports_only_domain(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        ok = top in STDLIB or name.startswith(("cpms_hub.domain", "cpms_hub.policy"))
        assert ok, f"{path.name} imports {name}"


@pytest.mark.parametrize("path", _modules(HUB / "crypto"), ids=lambda p: p.name)
def test_crypto_imports_only_cryptography(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        ok = (
            top in STDLIB
            or top == "cryptography"
            or name.startswith(("cpms_hub.crypto", "cpms_hub.domain.errors"))
        )
        assert ok, f"{path.name} imports {name}"


@pytest.mark.parametrize("path", _modules(HUB / "store"), ids=lambda p: p.name)
def test_store_imports_domain_and_crypto_only(path: Path) -> None:
    for name in _imports(path):
        if name.startswith("cpms_hub"):
            assert name.startswith(("cpms_hub.domain", "cpms_hub.crypto", "cpms_hub.store")), (
                f"{path.name} imports {name}"
            )


@pytest.mark.parametrize(
    "path",
    _modules(REPO / "cpms_widgets") + _modules(REPO / "extensions"),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_user_side_imports_only_the_domain_of_the_hub(path: Path) -> None:
    for name in _imports(path):
        if name.startswith("cpms_hub"):
            assert name.startswith("cpms_hub.domain"), f"{path} imports {name}"


@pytest.mark.parametrize(("method", "path"), ROUTES_DOC)
def test_every_route_is_documented(method: str, path: str) -> None:
    assert f"`{method} {path}`" in README, f"README does not document {method} {path}"


def _env_settings() -> set[str]:
    names = set()
    for src in [HUB / "settings.py", REPO / "jupyterhub_config.py", HUB / "isolation.py"]:
        names.update(re.findall(r"CPMS_[A-Z_]+", src.read_text()))
    return names


@pytest.mark.parametrize("name", sorted(_env_settings()))
def test_every_setting_is_documented(name: str) -> None:
    assert f"`{name}`" in README, f"README does not document {name}"


def test_every_setting_has_help_text() -> None:
    for name, trait in CpmsSettings.class_traits(config=True).items():
        assert trait.help and "CPMS_" in trait.help, f"CpmsSettings.{name} lacks help or env name"


def test_cli_commands_are_documented() -> None:
    from cpms_hub.admin import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for command in sub.choices:
        assert f"cpms-admin {command}" in README, f"README does not document cpms-admin {command}"
