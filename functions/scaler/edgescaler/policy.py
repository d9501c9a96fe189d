"""Policy documents: the validated, typed form of one YAML policy file (design.md §4).

Pure: no file or YAML handling here (that is :mod:`edgescaler.policyfile`). Every constraint the
edge ``ScaleOutCluster`` API documents is enforced, so a policy that validates produces a body the
API accepts; the login password is only ever a *reference* (``from_env``), resolved at run time.

Unknown keys are rejected everywhere. Types are strict: ``"20"`` is not an int, ``1`` is not a bool.
"""

from __future__ import annotations

import itertools
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

WORKER_PERIODS = (1, 2, 3, 6, 12, 24, 36, 48, 60)
MAX_COUNT_PER_CALL = 500  # the CS API's per-call ceiling
MAX_COOLDOWN = timedelta(hours=12)  # the guard reads a day of history; keep well inside it
MAX_HISTORY_POINTS = 11_000  # Prometheus' limit of points per series in one query_range
MAX_HORIZON = timedelta(days=1)

_DURATION = re.compile(r"^(?:(\d{1,5})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,9})s)?$")
_MAX_DURATION_SECONDS = 10 * 365 * 86400  # far above any limit; keeps timedelta in range


def parse_duration(value: object) -> timedelta:
    """``90s``, ``10m``, ``1h30m``, ``7d``, or a non-negative number of seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 90s, 10m or 1h30m")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("must be a non-negative number of seconds")
        if value > _MAX_DURATION_SECONDS:
            raise ValueError("is far too long")
        return timedelta(seconds=value)
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match and any(match.groups()):
            d, h, m, s = (int(g) if g else 0 for g in match.groups())
            return timedelta(days=d, hours=h, minutes=m, seconds=s)
    raise ValueError("must be a duration like 90s, 10m or 1h30m")


def format_duration(value: timedelta) -> str:
    total = int(value.total_seconds())
    d, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s" if s else ""]
    return "".join(parts) or "0s"


def positive_duration(v: object) -> timedelta:
    d = parse_duration(v)
    if d <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return d


Duration = Annotated[timedelta, Field(description="duration like 90s, 10m, 1h30m")]


class FieldError(ValueError):
    """A cross-field problem that belongs to a specific sub-field of the model raising it.

    Pydantic locates model-level errors at the model itself; the policy loader appends ``loc``
    so that the message points at the field (and line) the user has to change.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class PasswordRef(_Model):
    """Where the ENS login password comes from. Never the password itself.

    ``from_env``: an environment variable of the function; ``kms_secret``: a KMS Secrets Manager
    secret (name or ARN), read with the function's role. Exactly one.
    """

    from_env: StrictStr | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    kms_secret: StrictStr | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_/+=.@:-]{1,256}$", max_length=256
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PasswordRef:
        if self.from_env is not None and self.kms_secret is not None:
            raise ValueError("give one of from_env or kms_secret, not both")
        if self.from_env is None and self.kms_secret is None:
            raise ValueError(
                "give the password by reference: {from_env: VARIABLE} or {kms_secret: NAME}"
            )
        return self


def _disk_size(v: int, low: int, high: int, range_message: str) -> int:
    """ENS disks: GiB within [low, high], in steps of 10."""
    if not low <= v <= high:
        raise ValueError(range_message)
    if v % 10:
        raise ValueError("must be a multiple of 10")
    return v


def _reject_inline_password(value: Any) -> Any:
    if isinstance(value, str):
        # Deliberately not echoing the value: it may be a real password.
        raise ValueError(
            "an inline password is not allowed; use {from_env: VARIABLE} or {kms_secret: NAME}"
        )
    return value


class ScaleOutSpec(_Model):
    """The ScaleOutCluster ENS body minus ``count``, with the API's documented constraints."""

    worker_instance_type: StrictStr = Field(pattern=r"^ens\.[a-z0-9]+\.[a-z0-9]+$")
    ens_region_id: StrictStr = Field(pattern=r"^[a-z]{2}(-[a-z0-9]+)+$")
    worker_image_id: StrictStr = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    ens_internet_charge_type: Literal["BandwidthByDay", "95BandwidthByMonth"]
    worker_period: StrictInt
    login_password: PasswordRef
    worker_system_disk_size: StrictInt
    is_edge_worker: StrictBool
    worker_data_disk_size: StrictInt = 0
    worker_auto_renew: StrictBool = False
    worker_auto_renew_period: StrictInt | None = Field(default=None, validate_default=True)
    timeout_mins: StrictInt = Field(default=60, ge=1, le=1440)

    _inline = field_validator("login_password", mode="before")(_reject_inline_password)

    @field_validator("worker_period")
    @classmethod
    def _period(cls, v: int) -> int:
        if v not in WORKER_PERIODS:
            raise ValueError(f"must be one of {', '.join(map(str, WORKER_PERIODS))} (months)")
        return v

    @field_validator("worker_system_disk_size")
    @classmethod
    def _system_disk(cls, v: int) -> int:
        return _disk_size(v, 20, 100, "must be between 20 and 100 (GiB)")

    @field_validator("worker_data_disk_size")
    @classmethod
    def _data_disk(cls, v: int) -> int:
        if v == 0:  # no data disk
            return v
        return _disk_size(v, 20, 200, "must be 0 (no data disk) or between 20 and 200 (GiB)")

    @field_validator("is_edge_worker")
    @classmethod
    def _edge(cls, v: bool) -> bool:
        if v is not True:
            raise ValueError("must be true (only ENS edge workers can be added)")
        return v

    @field_validator("worker_auto_renew_period")
    @classmethod
    def _renew_period(cls, v: int | None, info: ValidationInfo) -> int | None:
        # A field validator (not a model validator) so it runs even when other fields fail,
        # and the user sees every problem of the file at once.
        if v is None:
            if info.data.get("worker_auto_renew") is True:
                raise ValueError("required when worker_auto_renew is true")
            return v
        if not 1 <= v <= 12:
            raise ValueError("must be between 1 and 12 (months)")
        return v

    def body(self, count: int, password: str) -> dict[str, Any]:
        """The exact ScaleOutCluster JSON body, in the documented field order."""
        out: dict[str, Any] = {
            "count": count,
            "worker_instance_type": self.worker_instance_type,
            "ens_region_id": self.ens_region_id,
            "worker_image_id": self.worker_image_id,
            "ens_internet_charge_type": self.ens_internet_charge_type,
            "worker_period": self.worker_period,
            "login_password": password,
            "worker_system_disk_size": self.worker_system_disk_size,
            "is_edge_worker": True,
            "worker_data_disk_size": self.worker_data_disk_size,
            "worker_auto_renew": self.worker_auto_renew,
        }
        if self.worker_auto_renew:
            out["worker_auto_renew_period"] = self.worker_auto_renew_period
        out["timeout_mins"] = self.timeout_mins
        return out


class Limits(_Model):
    min_nodes: StrictInt = Field(default=0, ge=0)
    max_nodes: StrictInt = Field(ge=1)
    max_step: StrictInt = Field(ge=1, le=MAX_COUNT_PER_CALL)

    @field_validator("max_nodes")
    @classmethod
    def _ordered(cls, v: int, info: ValidationInfo) -> int:
        low = info.data.get("min_nodes")
        if low is not None and low > v:
            raise ValueError(f"must be at least min_nodes ({low})")
        return v


class Budget(_Model):
    """Rolling limits on nodes added, enforced from the activity log (all triggers together)."""

    nodes_per_hour: StrictInt | None = Field(default=None, ge=1)
    nodes_per_day: StrictInt | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _some(self) -> Budget:
        if self.nodes_per_hour is None and self.nodes_per_day is None:
            raise ValueError("give nodes_per_hour, nodes_per_day or both")
        return self


class AlarmValue(_Model):
    """Opt-in: the value a CloudMonitor alarm carries may stand in for this metric.

    When the run was triggered by a firing alarm on CloudMonitor metric ``metric`` whose value
    is at most ``max_age`` old, and the metric's own query cannot be answered (Prometheus down,
    stale, empty), the alarm's value is the reading (source ``alarm``): an outage of Prometheus
    during an alarm does not blind the policy. The alarm's metric must mean the same as the
    query (same unit, same scope): that is the policy author's promise.
    """

    metric: StrictStr = Field(min_length=1, max_length=200)
    max_age: Duration = timedelta(minutes=2)

    @field_validator("max_age", mode="before")
    @classmethod
    def _duration(cls, v: object) -> timedelta:
        return positive_duration(v)


class MetricSpec(_Model):
    """One PromQL instant query that must return exactly one series."""

    query: StrictStr = Field(min_length=1)
    max_age: Duration = timedelta(minutes=2)
    freshness_query: StrictStr | None = Field(default=None, min_length=1)
    alarm: AlarmValue | None = None

    @field_validator("max_age", mode="before")
    @classmethod
    def _duration(cls, v: object) -> timedelta:
        return positive_duration(v)


Number = StrictInt | StrictFloat


def _finite(v: float) -> float:
    try:
        value = float(v)  # an int beyond the float range raises OverflowError
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class TargetTrackingRule(_Model):
    """Keep load per node at a target.

    ``target_per_node``: the metric is a total (e.g. busy cores); desired nodes =
    ceil(value / target_per_node). ``target_value``: the metric is an average utilisation across
    the current nodes; desired = ceil(current * value / target_value). With ``tolerance`` t, no
    change while the load is within ±t of the target (ratio in [1-t, 1+t]).
    """

    type: Literal["target_tracking"]
    metric: StrictStr
    target_per_node: Number | None = Field(default=None, gt=0)
    target_value: Number | None = Field(default=None, gt=0)
    tolerance: Number = Field(default=0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _one_target(self) -> TargetTrackingRule:
        if (self.target_per_node is None) == (self.target_value is None):
            raise ValueError("give exactly one of target_per_node or target_value")
        for name in ("target_per_node", "target_value"):
            v = getattr(self, name)
            if v is not None:
                try:
                    _finite(v)
                except ValueError as exc:
                    raise FieldError((name,), str(exc)) from None
        return self


class Step(_Model):
    lower: Number
    upper: Number | None = None
    add: StrictInt = Field(ge=1, le=MAX_COUNT_PER_CALL)

    @model_validator(mode="after")
    def _interval(self) -> Step:
        _finite(self.lower)
        if self.upper is not None:
            _finite(self.upper)
            if self.upper <= self.lower:
                raise FieldError(("upper",), f"must be greater than lower ({self.lower})")
        return self

    def contains(self, value: float) -> bool:
        """Half-open interval [lower, upper)."""
        return value >= self.lower and (self.upper is None or value < self.upper)


class StepRule(_Model):
    """Add a fixed number of nodes depending on which interval [lower, upper) the value is in."""

    type: Literal["step"]
    metric: StrictStr
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _no_overlap(self) -> StepRule:
        ordered = sorted(self.steps, key=lambda s: s.lower)
        for a, b in itertools.pairwise(ordered):
            if a.upper is None or a.upper > b.lower:
                raise FieldError(
                    ("steps",),
                    f"steps overlap: [{a.lower}, {a.upper if a.upper is not None else 'inf'}) "
                    f"and [{b.lower}, {b.upper if b.upper is not None else 'inf'})",
                )
        return self


class ThresholdRule(_Model):
    """Add ``add`` nodes while the value is strictly above ``above``."""

    type: Literal["threshold"]
    metric: StrictStr
    above: Number
    add: StrictInt = Field(ge=1, le=MAX_COUNT_PER_CALL)

    _above = field_validator("above")(_finite)


class HistorySpec(_Model):
    """How a predictive rule reads its metric's history: one ``query_range`` per run, from
    ``now - window`` to ``now`` every ``step``."""

    window: Duration = timedelta(days=8)
    step: Duration = timedelta(minutes=2)

    @field_validator("window", "step", mode="before")
    @classmethod
    def _duration(cls, v: object) -> timedelta:
        return positive_duration(v)

    @field_validator("step")
    @classmethod
    def _points(cls, v: timedelta, info: ValidationInfo) -> timedelta:
        window = info.data.get("window")
        if window is not None:
            if v >= window:
                raise ValueError(f"must be shorter than window ({format_duration(window)})")
            points = window // v + 1
            if points > MAX_HISTORY_POINTS:
                raise ValueError(
                    f"window {format_duration(window)} every {format_duration(v)} is {points} "
                    f"points; Prometheus allows at most {MAX_HISTORY_POINTS} (use a longer step)"
                )
        return v

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """(start, end) of the query at ``now``: ``end`` is the newest multiple of ``step``
        since the Unix epoch at or before ``now`` (so runs within one step read the same,
        cacheable range), ``start = end - window``."""
        s = self.step.total_seconds()
        end = datetime.fromtimestamp(math.floor(now.timestamp() / s) * s, tz=timezone.utc)
        return end - self.window, end


class PredictiveRule(_Model):
    """Forecast the metric's peak over the next ``horizon`` and add what that peak needs.

    The metric is a total (like ``target_per_node`` target tracking): desired nodes =
    ceil(max(forecast bound, current value) / target_per_node), counting nodes still joining.
    The forecast (:mod:`edgescaler.forecast`): the recent level, plus the larger of the peak seen
    over the same stretch in past ``seasons`` cycles and the damped recent trend; then headroom,
    the larger of ``uncertainty`` x the recent noise and the ``surprise_quantile`` of the
    metric's own recent jumps; at most ``1 + max_growth`` x its high of the ``growth_window``.
    ``horizon`` should cover the join delay of new nodes plus the cooldown.
    """

    type: Literal["predictive"]
    metric: StrictStr
    target_per_node: Number = Field(gt=0)
    horizon: Duration = timedelta(minutes=30)
    history: HistorySpec = Field(default_factory=HistorySpec)
    seasons: list[Duration] = Field(
        default_factory=lambda: [timedelta(days=1), timedelta(days=7)], max_length=4
    )
    cycles: StrictInt = Field(default=3, ge=1, le=8)
    level_window: Duration = timedelta(minutes=10)
    trend_window: Duration = timedelta(hours=1)
    trend_damping: Number = Field(default=0.5, ge=0, le=1)
    noise_window: Duration = timedelta(hours=2)
    uncertainty: Number = Field(default=2.0, ge=0, le=10)
    surprise_window: Duration = timedelta(days=1)
    surprise_quantile: Number | None = Field(default=0.9, gt=0, le=1)
    growth_window: Duration = timedelta(days=1)
    max_growth: Number | None = Field(default=0.15, gt=0)

    _tpn = field_validator("target_per_node")(_finite)

    @field_validator(
        "horizon",
        "level_window",
        "trend_window",
        "noise_window",
        "surprise_window",
        "growth_window",
        mode="before",
    )
    @classmethod
    def _duration(cls, v: object) -> timedelta:
        return positive_duration(v)

    @field_validator("seasons", mode="before")
    @classmethod
    def _seasons(cls, v: object) -> object:
        if isinstance(v, list):
            return [positive_duration(x) for x in v]
        return v

    @field_validator("horizon")
    @classmethod
    def _horizon(cls, v: timedelta) -> timedelta:
        if v > MAX_HORIZON:
            raise ValueError(f"must be at most {format_duration(MAX_HORIZON)}")
        return v

    @model_validator(mode="after")
    def _fits_history(self) -> PredictiveRule:
        step, window = self.history.step, self.history.window
        if self.horizon < step:
            raise FieldError(
                ("horizon",), f"must be at least the history step ({format_duration(step)})"
            )
        used = ["level_window", "trend_window", "noise_window"]
        used += ["surprise_window"] if self.surprise_quantile is not None else []
        used += ["growth_window"] if self.max_growth is not None else []
        for name in used:
            d: timedelta = getattr(self, name)
            if d > window:
                raise FieldError(
                    (name,), f"must fit in the history window ({format_duration(window)})"
                )
        for i, season in enumerate(self.seasons):
            if season < self.horizon:
                raise FieldError(
                    ("seasons", i),
                    f"must be at least the horizon ({format_duration(self.horizon)})",
                )
        return self


Rule = Annotated[
    TargetTrackingRule | StepRule | ThresholdRule | PredictiveRule, Field(discriminator="type")
]


MAX_PROMETHEUS_TIMEOUT = timedelta(seconds=60)


class PrometheusSpec(_Model):
    url: StrictStr = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    timeout: Duration = timedelta(seconds=5)

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: object) -> timedelta:
        d = positive_duration(v)
        if d > MAX_PROMETHEUS_TIMEOUT:
            raise ValueError(f"must be at most {format_duration(MAX_PROMETHEUS_TIMEOUT)}")
        return d


class Policy(_Model):
    """One validated policy file."""

    name: StrictStr = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    cluster_id: StrictStr = Field(pattern=r"^c[0-9a-z]{8,64}$")
    region: StrictStr = Field(pattern=r"^[a-z]{2}(-[a-z0-9]+)+$")
    scale_out: ScaleOutSpec
    limits: Limits
    cooldown: Duration = timedelta(minutes=10)
    budget: Budget | None = None
    prometheus: PrometheusSpec | None = None
    metrics: dict[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$")], MetricSpec] = Field(
        min_length=1
    )
    rules: list[Rule] = Field(min_length=1)
    # CloudMonitor alarms (rule names or ids) that concern this policy: such a policy is woken
    # by those alarms only (timers and manual runs still evaluate it). None: any alarm that no
    # policy names wakes it.
    alarms: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, min_length=1
    )

    def histories(self) -> dict[str, HistorySpec]:
        """The metrics predictive rules forecast, and how to read each one's history."""
        return {r.metric: r.history for r in self.rules if isinstance(r, PredictiveRule)}

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, v: object) -> timedelta:
        d = parse_duration(v)
        if d > MAX_COOLDOWN:
            raise ValueError(f"must be at most {format_duration(MAX_COOLDOWN)}")
        return d

    @field_validator("rules")
    @classmethod
    def _rules_name_metrics(cls, rules: list[Rule], info: ValidationInfo) -> list[Rule]:
        metrics = info.data.get("metrics")
        if metrics is None:  # metrics itself is invalid; that error is reported already
            return rules
        histories: dict[str, tuple[int, HistorySpec]] = {}
        for i, rule in enumerate(rules):
            if rule.metric not in metrics:
                known = ", ".join(sorted(metrics))
                raise FieldError(
                    (i, "metric"), f"unknown metric {rule.metric!r} (defined: {known})"
                )
            if isinstance(rule, PredictiveRule):
                # One query_range per metric per run: its predictive rules read the same history.
                first = histories.setdefault(rule.metric, (i, rule.history))
                if first[1] != rule.history:
                    raise FieldError(
                        (i, "history"),
                        f"must be the same as rule {first[0]}'s on metric {rule.metric!r} "
                        f"(one history query per metric)",
                    )
        return rules
