"""What an emulator is configured with: credentials, clusters, delays and a Prometheus scenario.

Importing this module is cheap (no HTTP server, no signing, no httpx): the ``edgescaler`` CLI
declares the ``emulator`` subcommand from it on every run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

API_VERSION = "2015-12-15"
DEFAULT_CLUSTER_ID = "c82e6987e2961451182edacd74faf0000"
DEFAULT_ACCESS_KEY_ID = "LTAIemulatorKeyId0001"
DEFAULT_ACCESS_KEY_SECRET = "emulator-secret-0001"  # noqa: S105 - a well-known fake
ENV_PREFIX = "EDGESCALER_EMULATOR_"


@dataclass
class ClusterSpec:
    """The nodes a cluster starts with (all ``running``/``Ready``)."""

    edge_workers: int = 2
    masters: int = 3
    cloud_workers: int = 1
    instance_type: str = "ens.sn1.tiny"


@dataclass
class ScenarioStep:
    """From ``at`` seconds after the scenario start, ``values`` are in force.

    A metric keeps the value of the last step (``at`` ≤ elapsed) that names it; ``None`` makes it
    absent (empty result). ``stale`` maps a metric of this step to an age in seconds: its sample
    timestamp is then the step time minus that age instead of the evaluation time.
    """

    at: float
    values: dict[str, float | None]
    stale: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.at = float(self.at)
        self.values = {k: None if v is None else float(v) for k, v in self.values.items()}
        self.stale = {k: float(v) for k, v in self.stale.items()}
        extra = sorted(set(self.stale) - set(self.values))
        if extra:
            raise ValueError(
                f"step at {self.at}: stale names metrics the step sets no value for: {extra}"
            )

    @classmethod
    def from_obj(cls, obj: Any, *, where: str = "step") -> ScenarioStep:
        """Parse ``{"at": s, "values": {m: v}, "stale": {m: age}}`` or ``[at, {m: v}]``.

        Values may be numbers, ``null`` (absent) or the strings ``NaN``, ``+Inf``, ``-Inf``.
        """
        if isinstance(obj, (list, tuple)) and len(obj) == 2:
            obj = {"at": obj[0], "values": obj[1]}
        if not isinstance(obj, Mapping):
            raise ValueError(f"{where}: expected a mapping with 'at' and 'values'")
        unknown = sorted(set(obj) - {"at", "values", "stale"})
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}")
        at = obj.get("at")
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
            raise ValueError(f"{where}: 'at' must be a number of seconds")
        raw_values = obj.get("values")
        if not isinstance(raw_values, Mapping):
            raise ValueError(f"{where}: 'values' must map metric to value")
        values = {str(k): _scenario_value(v, f"{where}: values.{k}") for k, v in raw_values.items()}
        raw_stale = obj.get("stale") or {}
        if not isinstance(raw_stale, Mapping):
            raise ValueError(f"{where}: 'stale' must map metric to an age in seconds")
        stale: dict[str, float] = {}
        for key, age in raw_stale.items():
            if isinstance(age, bool) or not isinstance(age, (int, float)) or age < 0:
                raise ValueError(f"{where}: stale.{key} must be a non-negative number of seconds")
            stale[str(key)] = float(age)
        try:
            return cls(float(at), values, stale)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None


def _scenario_value(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{where}: must be a number, NaN, +Inf, -Inf or null")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip() in {"NaN", "nan", "+Inf", "Inf", "-Inf"}:
        return float(value.strip())
    raise ValueError(f"{where}: must be a number, NaN, +Inf, -Inf or null")


def _default_clusters() -> dict[str, ClusterSpec]:
    return {DEFAULT_CLUSTER_ID: ClusterSpec()}


@dataclass
class EmulatorConfig:
    """Credentials the emulator accepts, its clusters, its delays and its Prometheus scenario.

    ``scenario_start`` (wall seconds) anchors the scenario; ``None`` means "when started".
    ``seed`` seeds the RNG of probabilistic faults.
    """

    access_key_id: str = DEFAULT_ACCESS_KEY_ID
    access_key_secret: str = field(default=DEFAULT_ACCESS_KEY_SECRET, repr=False)
    security_token: str | None = field(default=None, repr=False)
    clusters: dict[str, ClusterSpec] = field(default_factory=_default_clusters)
    task_delay: float = 0.0
    join_delay: float = 0.0
    scenario: list[ScenarioStep] = field(default_factory=list)
    scenario_start: float | None = None
    seed: int = 0


def load_scenario(path: str | Path) -> list[ScenarioStep]:
    """Read a scenario file: JSON (``.json``) or YAML; a list of steps or ``{"steps": [...]}``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data: Any = json.loads(text)
    else:
        import yaml  # lazily: only the CLI reads scenario files

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: {err}") from None
    if isinstance(data, Mapping) and "steps" in data:
        data = data["steps"]
    if not isinstance(data, list):
        raise ValueError(f"{path}: a scenario is a list of steps")
    return [
        ScenarioStep.from_obj(item, where=f"{path}: step #{i + 1}") for i, item in enumerate(data)
    ]
