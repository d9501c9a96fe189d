"""The pure core imports no I/O, and the FC entry stays lean at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import edgescaler
from tests.support.builders import write_policy

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


# Never loaded by ``import index`` nor by a run that does not use them: the S3 store's botocore,
# the FC and OSS SDKs, replay's plotting stack, prometheus-api-client's date parsers.
HEAVY = (
    "boto3",
    "botocore",
    "fc2",
    "matplotlib",
    "numpy",
    "pandas",
    "alibabacloud_oss_v2",
    "alibabacloud_tea_openapi",
    "dateparser",
    "dateutil",
    "regex",
    "pytz",
    "tzdata",
)
# Loaded by the first call that needs one, not by ``import index``.
CLIENTS = ("httpx", "requests", "urllib3", "prometheus_api_client", "sqlite3")
# Loaded by the first run that reads policies, not by ``import index``: the import stays what
# every event needs (a refused callback or a malformed event never reads policies).
POLICY_MACHINERY = ("pydantic", "yaml", "edgescaler.policy", "edgescaler.pipeline")


def _loaded_by(code: str) -> list[str]:
    """Which of the modules above are loaded after running ``code`` in a fresh interpreter."""
    watched = HEAVY + CLIENTS + POLICY_MACHINERY
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); " + code + "; "
        f"print('LOADED=' + ','.join(m for m in {watched!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(PACKAGE.parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("LOADED="), out.stdout[-500:]
    return [m for m in last[len("LOADED=") :].split(",") if m]


def test_fc_entry_imports_no_heavy_module_client_or_policy_machinery() -> None:
    assert _loaded_by("import index") == []


def test_a_run_loads_what_it_uses_and_no_heavy_module(tmp_path: Path) -> None:
    """The same list after a dry run of one policy (it ends in error at the CS client: no
    credentials): the policy machinery, SQLite and httpx are loaded, nothing heavy."""
    policies = tmp_path / "policies"
    write_policy(policies)
    code = (
        "import index, os; "
        f"os.environ.update(EDGESCALER_POLICY_DIR={str(policies)!r}, "
        f"EDGESCALER_STORE='sqlite:///{tmp_path}/s.db', EDGESCALER_DRY_RUN='true'); "
        "index.handler(b'', None)"
    )
    loaded = _loaded_by(code)
    assert set(POLICY_MACHINERY) <= set(loaded)
    assert {"httpx", "sqlite3"} <= set(loaded)
    assert [m for m in loaded if m in HEAVY] == []


def test_the_cli_declares_the_emulator_without_loading_it() -> None:
    """Every ``edgescaler`` command builds the whole parser; only ``emulator``/``demo`` need the
    HTTP server, the world and httpx, only ``replay`` the simulator (and the policy models)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from edgescaler import cli; "
        "cli.build_parser().parse_args(['emulator', '--port', '0']); "
        "heavy = [m for m in ('httpx', 'http.server', 'edgescaler.emulator.routes', "
        "'edgescaler.emulator.server', 'edgescaler.emulator.world', 'edgescaler.emulator.verify', "
        "'pydantic', 'edgescaler.replay.command', 'edgescaler.replay.simulator') "
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
