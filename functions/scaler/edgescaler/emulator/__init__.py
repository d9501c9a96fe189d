"""A local CS (ACK 2015-12-15) API and a scripted Prometheus: the fake the scaler runs against.

This is shipped code, not a test mock: the demo, the end-to-end tests and the concurrency tests
run the real scaler against it (it is left out of the function zip: see
:data:`edgescaler.package.FUNCTION_MODULES`). It keeps clusters, nodes and tasks in memory behind
one lock, checks ACS3-HMAC-SHA256 signatures with the same pure functions the client signs with
(:mod:`edgescaler.cloud.signing`), and can inject deterministic faults.

One module per concern::

    config      EmulatorConfig, ClusterSpec, ScenarioStep, load_scenario, the built-in defaults
    api         the JSON error shape, responses, request ids
    verify      the signature check of received requests (its rejection codes, in order)
    rules       the ScaleOutCluster body rules and the ENS password rule; redact_body
    world       clusters, nodes, tasks, faults: the state behind the lock
    prometheus  the scripted instant-query answers
    routes      Emulator: lifecycle, inject/state/reset, which request goes where (the route map)
    server      the ThreadingHTTPServer plumbing
    cli         ``edgescaler emulator`` / ``python -m edgescaler.emulator``

Time comes from an injectable ``clock`` (wall seconds). The ENS ``login_password`` is never
logged or kept: only a copy of the body with it replaced by ``"***"`` is recorded, and validation
messages never echo it.

The names below are imported on first use (PEP 562), so that ``edgescaler.emulator.cli`` (which
every ``edgescaler`` command imports to declare its options) does not load the HTTP server,
the world and httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module of this package that defines it
_HOME = {
    "API_VERSION": "config",
    "DEFAULT_ACCESS_KEY_ID": "config",
    "DEFAULT_ACCESS_KEY_SECRET": "config",
    "DEFAULT_CLUSTER_ID": "config",
    "ENV_PREFIX": "config",
    "ClusterSpec": "config",
    "EmulatorConfig": "config",
    "ScenarioStep": "config",
    "load_scenario": "config",
    "MAX_CLOCK_SKEW": "verify",
    "REQUIRED_SIGNED": "verify",
    "verify_signature": "verify",
    "redact_body": "rules",
    "validate_scale_out": "rules",
    "FAULT_KINDS": "world",
    "TASK_FAULT_KINDS": "world",
    "ACTIONS": "routes",
    "Emulator": "routes",
    "add_cli_arguments": "cli",
    "config_from_args": "cli",
    "main": "cli",
    "run_cli": "cli",
}
__all__ = sorted(_HOME)

if TYPE_CHECKING:
    from edgescaler.emulator.cli import add_cli_arguments as add_cli_arguments
    from edgescaler.emulator.cli import config_from_args as config_from_args
    from edgescaler.emulator.cli import main as main
    from edgescaler.emulator.cli import run_cli as run_cli
    from edgescaler.emulator.config import API_VERSION as API_VERSION
    from edgescaler.emulator.config import DEFAULT_ACCESS_KEY_ID as DEFAULT_ACCESS_KEY_ID
    from edgescaler.emulator.config import DEFAULT_ACCESS_KEY_SECRET as DEFAULT_ACCESS_KEY_SECRET
    from edgescaler.emulator.config import DEFAULT_CLUSTER_ID as DEFAULT_CLUSTER_ID
    from edgescaler.emulator.config import ENV_PREFIX as ENV_PREFIX
    from edgescaler.emulator.config import ClusterSpec as ClusterSpec
    from edgescaler.emulator.config import EmulatorConfig as EmulatorConfig
    from edgescaler.emulator.config import ScenarioStep as ScenarioStep
    from edgescaler.emulator.config import load_scenario as load_scenario
    from edgescaler.emulator.routes import ACTIONS as ACTIONS
    from edgescaler.emulator.routes import Emulator as Emulator
    from edgescaler.emulator.rules import redact_body as redact_body
    from edgescaler.emulator.rules import validate_scale_out as validate_scale_out
    from edgescaler.emulator.verify import MAX_CLOCK_SKEW as MAX_CLOCK_SKEW
    from edgescaler.emulator.verify import REQUIRED_SIGNED as REQUIRED_SIGNED
    from edgescaler.emulator.verify import verify_signature as verify_signature
    from edgescaler.emulator.world import FAULT_KINDS as FAULT_KINDS
    from edgescaler.emulator.world import TASK_FAULT_KINDS as TASK_FAULT_KINDS


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
