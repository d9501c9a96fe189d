"""Policy unit tests: ``NAME.test.yaml`` beside ``NAME.yaml``, run by ``edgescaler test-policies``.

Each case gives the state a run would see and the result it expects; the case runs through
:func:`edgescaler.offline.evaluate` — the real guard and decision engine, in the pipeline's
order — so a case fails exactly when the deployed function would do something else::

    policy: edge-predictive.yaml       # optional; default: this file's name without .test
    cases:
      - name: a quiet night adds nothing
        now: 2026-11-27T03:00:00Z       # optional (default 2026-01-01T00:00:00Z)
        nodes: 4                        # nodes the cloud lists: ready and joining
        readings: {cpu_cores: 3.2}      # every metric of the policy; null: could not be read
        history:                        # for predictive rules: the metric's past, ending at now
          cpu_cores:
            step: 1m                    # default: the rule's history step
            daily: [3, 3, 2, 2, 2, 3, 5, 8, 10, 10, 10, 10, 10, 10, 10, 10, 9, 8, 7, 6, 5, 4, 3, 3]
            days: 8                     # the 24 hourly levels above (UTC hours, joined by straight
                                        # lines), repeated over this many days, then
            values: [3.1, 3.3, null]    # these points (newest last; null is a gap)
        activities:                     # the cluster's scale-out log, oldest first
          - {ago: 40m, add: 2, status: succeeded, ended_ago: 25m}
        running_tasks: []               # scale-out task ids the cloud still runs
        expect: {add: 0, outcome: no_change, reason: "no rule"}   # reason: a substring

``outcome`` is a run-report code; ``scaled`` means the actuator would be called with ``add``.
Failures are reported one line each, ``file:line: case 'name': expected ..., got ...``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from edgescaler import offline, policyfile
from edgescaler.activity import ENDED, Activity, Status
from edgescaler.errors import PolicyError, Problem
from edgescaler.metrics.base import Reading
from edgescaler.metrics.series import Series
from edgescaler.policy import Policy, PredictiveRule, parse_duration, positive_duration
from edgescaler.report import OutcomeCode

DEFAULT_NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
MAX_HISTORY_POINTS = 50_000
# What a policy test can expect: the outcomes the pure steps can reach.
OUTCOMES = tuple(
    str(o)
    for o in OutcomeCode
    if o
    not in (
        OutcomeCode.DUPLICATE_EVENT,
        OutcomeCode.DRY_RUN,
        OutcomeCode.ERROR,
        OutcomeCode.DEADLINE,
    )
)
StatusName = Literal[
    "claimed", "submitted", "unknown", "succeeded", "failed", "rejected", "timed_out", "throttled"
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _duration(v: object) -> timedelta:
    return parse_duration(v)


Dur = Annotated[timedelta, Field(description="90s, 10m, 1h30m, 2d")]


class ActivitySpec(_Model):
    ago: Dur
    add: StrictInt = Field(ge=1)
    status: StatusName = "succeeded"
    ended_ago: Dur | None = None  # ended statuses: default, when it was requested
    task_id: StrictStr | None = None
    error: StrictStr | None = None

    _durations = field_validator("ago", "ended_ago", mode="before")(_duration)


class HistorySpec(_Model):
    step: Dur | None = None
    daily: list[FiniteFloat] | None = Field(default=None, min_length=24, max_length=24)
    days: StrictInt = Field(default=0, ge=0, le=30)
    values: list[FiniteFloat | None] = Field(default_factory=list)

    _step = field_validator("step", mode="before")(positive_duration)  # the policy's check


class Expect(_Model):
    add: StrictInt = Field(ge=0)
    outcome: Literal[OUTCOMES] | None = None  # type: ignore[valid-type]
    reason: StrictStr | None = None


class Case(_Model):
    name: StrictStr = Field(min_length=1)
    now: AwareDatetime = DEFAULT_NOW
    nodes: StrictInt = Field(ge=0)
    readings: dict[str, FiniteFloat | None]  # null: no reading (NaN is not a case)
    history: dict[str, HistorySpec] = Field(default_factory=dict)
    activities: list[ActivitySpec] = Field(default_factory=list)
    running_tasks: list[StrictStr] = Field(default_factory=list)
    expect: Expect


class TestFile(_Model):
    policy: StrictStr | None = None
    cases: list[Case] = Field(min_length=1)


@dataclass(frozen=True)
class CaseResult:
    file: str
    line: int | None
    name: str
    failure: str | None  # None: passed

    @property
    def passed(self) -> bool:
        return self.failure is None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: case {self.name!r}: {self.failure or 'passed'}"


def policy_path(test: Path, named: str | None) -> Path:
    if named is not None:
        return test.parent / named
    stem = test.name.rsplit(".test.", 1)[0]
    for suffix in policyfile.SUFFIXES:
        candidate = test.parent / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return test.parent / f"{stem}.yaml"


def test_files(paths: Iterable[str | Path]) -> list[Path]:
    """``*.test.yaml`` files under ``paths`` (directories; hidden files ignored) or as given
    (files). As for policies, entries that are not readable regular files are returned too, so
    that reading them reports them (:func:`edgescaler.policyfile.read_text`)."""
    return policyfile.expand(paths, policyfile.is_test_file)


def untested(paths: Iterable[str | Path]) -> list[Path]:
    """Policy files in the directories of ``paths`` that have no test file beside them."""
    out = []
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            continue
        for f in policyfile.policy_files([p]):
            stem = f.name[: -len(f.suffix)]
            if not any((p / f"{stem}{s}").is_file() for s in policyfile.TEST_SUFFIXES):
                out.append(f)
    return out


def _history(spec: HistorySpec, metric: str, policy: Policy, now: datetime) -> Series:
    step = spec.step
    if step is None:
        step = next(
            (
                r.history.step
                for r in policy.rules
                if isinstance(r, PredictiveRule) and r.metric == metric
            ),
            None,
        )
        if step is None:
            raise ValueError(f"history.{metric}.step: required (no predictive rule on {metric})")
    values: list[float | None] = []
    per_day = round(timedelta(days=1) / step)
    if spec.daily is not None and spec.days:
        n = spec.days * per_day
        if n + len(spec.values) > MAX_HISTORY_POINTS:
            raise ValueError(f"history.{metric}: more than {MAX_HISTORY_POINTS} points")
        first = now - step * (n + len(spec.values) - 1)
        for k in range(n):
            t = (first + step * k).astimezone(timezone.utc)
            hour = (t.hour * 3600 + t.minute * 60 + t.second) / 3600.0
            h0 = int(hour) % 24
            frac = hour - int(hour)
            values.append(spec.daily[h0] * (1 - frac) + spec.daily[(h0 + 1) % 24] * frac)
    elif spec.daily is not None or spec.days:
        raise ValueError(f"history.{metric}: give daily and days together")
    values.extend(spec.values)
    start = now - step * (len(values) - 1)
    return Series(metric, start, step, values)


def _activities(case: Case, policy: Policy) -> list[Activity]:
    out = []
    for i, a in enumerate(case.activities, start=1):
        created = case.now - a.ago
        ended = None
        if a.status in ENDED:
            ended = case.now - (a.ended_ago if a.ended_ago is not None else a.ago)
        task = a.task_id
        if task is None and a.status in ("submitted", "succeeded", "failed", "timed_out"):
            task = f"T-{i}"
        out.append(
            Activity(
                cluster_id=policy.cluster_id,
                seq=i,
                policy=policy.name,
                add=a.add,
                status=Status(a.status),
                created_at=created,
                updated_at=ended or created,
                ended_at=ended,
                task_id=task,
                ens_region_id=policy.scale_out.ens_region_id,
                instance_type=policy.scale_out.worker_instance_type,
                timeout_mins=policy.scale_out.timeout_mins,
                error=a.error,
            )
        )
    return out


def run_case(case: Case, policy: Policy) -> str | None:
    """None if ``case`` passes, else why not (one line)."""
    unknown = sorted(set(case.readings) - set(policy.metrics))
    missing = sorted(set(policy.metrics) - set(case.readings))
    if unknown or missing:
        parts = [f"unknown metric(s) {', '.join(unknown)}"] if unknown else []
        parts += [f"no reading for {', '.join(missing)}"] if missing else []
        return "readings: " + "; ".join(parts)
    try:
        history = {m: _history(h, m, policy, case.now) for m, h in case.history.items()}
    except ValueError as exc:
        return str(exc)
    readings = {
        m: None if v is None else Reading(m, v, case.now, "test") for m, v in case.readings.items()
    }
    result = offline.evaluate(
        policy,
        _activities(case, policy),
        now=case.now,
        current=case.nodes,
        readings=readings,
        history=history,
        running_tasks=case.running_tasks,
    )
    exp = case.expect
    wrong = result.add != exp.add or (exp.outcome is not None and result.outcome != exp.outcome)
    if wrong:
        want = f"+{exp.add}" + (f" {exp.outcome}" if exp.outcome else "")
        return f"expected {want}, got +{result.add} {result.outcome}: {result.reason}"
    if exp.reason is not None and exp.reason not in result.reason:
        return f"expected the reason to contain {exp.reason!r}, got: {result.reason}"
    return None


def run_file(path: Path) -> list[CaseResult]:
    """Every case of one test file. Raises PolicyError if the file or its policy is invalid."""
    text = policyfile.read_text(path)  # the same limits as policies: size, FIFOs, symlinks
    spec = policyfile.validate(text, str(path), TestFile, "policy test")
    target = policy_path(path, spec.policy)
    if not target.is_file():
        line = policyfile.line_of(text, ("policy",)) if spec.policy else None
        raise PolicyError(
            [Problem(str(path), line, "policy" if spec.policy else "", f"no policy file {target}")]
        )
    (policy,) = policyfile.load([target])
    return [
        CaseResult(
            str(path), policyfile.line_of(text, ("cases", i)), case.name, run_case(case, policy)
        )
        for i, case in enumerate(spec.cases)
    ]


def main(paths: Sequence[str], *, verbose: bool = False) -> int:
    """Run the tests under ``paths``; print like pytest. 0: all passed, 1: a case failed,
    2: a test file or its policy is invalid, or there are no tests."""
    started = time.monotonic()
    try:
        files = test_files(paths)
    except PolicyError as exc:
        print(f"edgescaler: {exc}")
        return 2
    results: list[CaseResult] = []
    errors: list[Problem] = []
    for f in files:
        try:
            got = run_file(f)
        except PolicyError as exc:
            errors.extend(exc.problems)
            print(f"{f} E")
            continue
        results.extend(got)
        if verbose:
            for r in got:
                print(f"{r.file}::{r.name} {'PASSED' if r.passed else 'FAILED'}")
        else:
            print(f"{f} " + "".join("." if r.passed else "F" for r in got))
    for p in untested(paths):
        print(f"note: {p} has no test file ({p.stem}.test.yaml)")
    failed = [r for r in results if not r.passed]
    if failed or errors:
        print()
    for r in failed:
        print(f"FAILED {r}")
    for e in errors:
        print(f"ERROR {e}")
    passed = len(results) - len(failed)
    parts = [f"{len(failed)} failed"] if failed else []
    parts.append(f"{passed} passed")
    if errors:
        parts.append(f"{len(errors)} error{'s' if len(errors) != 1 else ''}")
    if not files:
        parts = ["no tests ran (no *.test.yaml found)"]
    print(f"{'=' * 10} {', '.join(parts)} in {time.monotonic() - started:.2f}s {'=' * 10}")
    if errors or not files:
        return 2
    return 1 if failed else 0
