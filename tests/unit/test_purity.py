"""The pure core imports no I/O, and the FC entry stays lean at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import edgescaler

PACKAGE = Path(edgescaler.__file__).resolve().parent
CORE = ["policy", "decision", "guard", "triggers", "activity", "cloud.model", "safejson"]
FORBIDDEN = {"httpx", "yaml", "os", "time", "requests", "boto3", "sqlite3", "socket", "subprocess"}


def imports_of(module: str) -> set[str]:
    path = PACKAGE.joinpath(*module.split(".")[1:])
    source = path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def closure(module: str) -> dict[str, set[str]]:
    """Imports of ``module`` and of every edgescaler module it pulls in, transitively."""
    seen: dict[str, set[str]] = {}
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen[m] = imports_of(m)
        todo += [i for i in seen[m] if i.startswith("edgescaler.") and i not in seen]
    return seen


@pytest.mark.parametrize("name", CORE)
def test_core_module_does_no_io(name: str) -> None:
    for module, imported in closure(f"edgescaler.{name}").items():
        roots = {i.split(".")[0] for i in imported}
        assert not roots & FORBIDDEN, f"{module} imports {sorted(roots & FORBIDDEN)}"


def test_fc_entry_imports_no_network_clients() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import index; "
        "heavy = [m for m in ('httpx', 'requests', 'prometheus_api_client', 'boto3', 'botocore', "
        "'fc2', 'sqlite3') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(PACKAGE.parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == ""


def test_the_cli_declares_the_emulator_without_loading_it() -> None:
    """Every ``edgescaler`` command builds the whole parser; only ``emulator``/``demo`` need the
    HTTP server, the world and httpx."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from edgescaler import cli; "
        "cli.build_parser().parse_args(['emulator', '--port', '0']); "
        "heavy = [m for m in ('httpx', 'http.server', 'edgescaler.emulator.routes', "
        "'edgescaler.emulator.server', 'edgescaler.emulator.world', 'edgescaler.emulator.verify') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(PACKAGE.parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == ""


def test_the_emulator_package_exports_resolve() -> None:
    import edgescaler.emulator as emulator

    for name in emulator.__all__:
        assert getattr(emulator, name) is not None, name
    assert emulator.Emulator.__module__ == "edgescaler.emulator.routes"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        emulator.nope  # noqa: B018
