"""Actuators: the only code that changes the world (the store's log and the cluster).

:class:`ScaleOutActuator` claims the scale-out in the store (create-only), sends exactly one
``ScaleOutCluster`` and records what came back. :class:`DryRunActuator` says what it would do and
writes nothing. The pipeline picks one; nothing else knows about dry runs.

How each ScaleOutCluster result is recorded (the POST is never retried — there is no
idempotency token):

============================================  ===========  =====================================
result                                        activity     meaning
============================================  ===========  =====================================
2xx with task id                              submitted    task running; polled by later runs
throttled (``Throttling*`` code or 429)       throttled    nothing was created; a short hold
4xx API error                                 rejected     nothing was created
connection refused / connect timeout          rejected     the request never left
read timeout, 5xx, 2xx without task id        unknown      may have gone through: never resent;
                                                           held in flight until resolved
============================================  ===========  =====================================

A scale-out is only begun when its whole exchange fits in the run's time left
(``scale_out_seconds``, see :class:`~edgescaler.deadline.Deadline`); otherwise the outcome is
``deadline`` and nothing is claimed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from edgescaler import guard, passwords, report
from edgescaler.deadline import Deadline
from edgescaler.decision import Decision
from edgescaler.errors import ConflictError, CSApiError, CSTransportError, SecretError, StoreError
from edgescaler.policy import Policy
from edgescaler.report import Outcome
from edgescaler.store.base import (
    CLAIMED,
    REJECTED,
    SUBMITTED,
    THROTTLED,
    UNKNOWN,
    Activity,
    Store,
)

log = logging.getLogger("edgescaler.actuator")


class ScaleOutAPI(Protocol):
    def scale_out(self, cluster_id: str, body: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True)
class Context:
    """What the actuator needs to know about the current run.

    ``lookback``: how far back the pipeline read the log (for re-reads after a lost claim);
    ``prior_tasks``: the cluster's scale-out task ids before this scale-out (kept in the claim
    so that an ambiguous POST can be resolved later).
    """

    now: datetime
    trigger: str
    event_key: str | None
    lookback: datetime
    prior_tasks: tuple[str, ...] = ()


class Actuator(Protocol):
    def execute(
        self, policy: Policy, decision: Decision, activities: Sequence[Activity], ctx: Context
    ) -> Outcome: ...

    def record(self, activity: Activity) -> None: ...


class DryRunActuator:
    """Reports what would be done; never writes to the store or the cloud."""

    def execute(
        self, policy: Policy, decision: Decision, activities: Sequence[Activity], ctx: Context
    ) -> Outcome:
        log.info("**DRY-RUN**: would add %d node(s) to %s", decision.add, policy.cluster_id)
        return Outcome(
            policy.name,
            policy.cluster_id,
            report.DRY_RUN,
            f"would add {decision.add}: {decision.explanation}",
            add=decision.add,
            decision=decision.to_dict(),
        )

    def record(self, activity: Activity) -> None:
        """Dry runs keep resolved task states in memory only."""


class ScaleOutActuator:
    """Claim, call ScaleOutCluster once, record."""

    def __init__(
        self,
        store: Store,
        cloud_for: Callable[[str], ScaleOutAPI],
        env: Mapping[str, str],
        *,
        deadline: Deadline | None = None,
        scale_out_seconds: float = 20.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._cloud_for = cloud_for
        self._env = env
        self._deadline = deadline
        self._scale_out_seconds = scale_out_seconds
        self._jitter = jitter

    def record(self, activity: Activity) -> None:
        self._store.update(activity)

    def execute(
        self, policy: Policy, decision: Decision, activities: Sequence[Activity], ctx: Context
    ) -> Outcome:
        name, cluster = policy.name, policy.cluster_id
        d = decision.to_dict()

        def outcome(code: str, reason: str, **kw: Any) -> Outcome:
            return Outcome(name, cluster, code, reason, decision=d, **kw)

        try:  # resolve the password before claiming: a missing one must not block the cluster
            password = passwords.resolve(policy.scale_out.login_password, self._env, where=name)
        except SecretError as exc:
            return outcome(report.ERROR, str(exc))
        if self._deadline is not None and not self._deadline.allows(self._scale_out_seconds):
            return outcome(
                report.DEADLINE,
                f"not starting a scale-out of +{decision.add}: {self._deadline.remaining():.0f}s "
                f"of the run left, a scale-out needs up to {self._scale_out_seconds:g}s",
            )

        # The claim goes right after the snapshot the guard and the decision were made on, never
        # after a fresh read: anything appended since then must make this create-only write fail.
        seq = (activities[-1].seq if activities else 0) + 1
        claim = Activity(
            cluster_id=cluster,
            seq=seq,
            policy=name,
            add=decision.add,
            status=CLAIMED,
            created_at=ctx.now,
            updated_at=ctx.now,
            event_key=ctx.event_key,
            trigger=ctx.trigger,
            ens_region_id=policy.scale_out.ens_region_id,
            instance_type=policy.scale_out.worker_instance_type,
            timeout_mins=policy.scale_out.timeout_mins,
            decision=d,
            prior_tasks=ctx.prior_tasks,
        )
        try:
            self._store.append(claim)
        except ConflictError:
            return self._lost_claim(policy, seq, ctx, d)
        except StoreError as exc:
            return outcome(report.ERROR, f"store unavailable, not scaling: {exc}")

        body = policy.scale_out.body(decision.add, password.reveal())
        try:
            result = self._cloud_for(policy.region).scale_out(cluster, body)
        except CSApiError as exc:
            if exc.throttled:
                return self._throttled(claim, activities, exc, ctx, outcome)
            status = UNKNOWN if exc.status >= 500 else REJECTED
            return self._finish_failed(claim, status, str(exc), exc.request_id, ctx, outcome)
        except CSTransportError as exc:
            status = UNKNOWN if exc.timeout else REJECTED
            return self._finish_failed(claim, status, str(exc), None, ctx, outcome)
        finally:
            del body  # drop the only structure holding the clear password

        done = claim.with_status(
            SUBMITTED, ctx.now, task_id=result.task_id, request_id=result.request_id
        )
        note = ""
        try:
            self._store.update(done)
        except StoreError as exc:
            # The scale-out happened; the claim still holds the cluster (in flight), so nothing
            # can double it. The next run resolves the claim through the cluster's tasks.
            note = f" (warning: could not record the task id: {exc})"
            log.error("recording task %s for %s failed: %s", result.task_id, cluster, exc)
        return outcome(
            report.SCALED,
            decision.explanation + note,
            add=decision.add,
            task_id=result.task_id,
            request_id=result.request_id,
            activity_seq=seq,
        )

    def _throttled(
        self,
        claim: Activity,
        activities: Sequence[Activity],
        exc: CSApiError,
        ctx: Context,
        outcome: Callable[..., Outcome],
    ) -> Outcome:
        delay = guard.throttle_delay(activities, exc.retry_after, 0.5 + self._jitter() / 2)
        retry_at = ctx.now + delay
        try:
            self._store.update(
                claim.with_status(
                    THROTTLED, ctx.now, error=str(exc), request_id=exc.request_id, retry_at=retry_at
                )
            )
        except StoreError as error:
            log.error("recording the throttled scale-out #%d failed: %s", claim.seq, error)
        return outcome(
            report.BACKOFF,
            f"ScaleOutCluster throttled, nothing created; retrying after "
            f"{int(delay.total_seconds())}s: {exc}",
            request_id=exc.request_id,
            activity_seq=claim.seq,
        )

    def _finish_failed(
        self,
        claim: Activity,
        status: str,
        error: str,
        request_id: str | None,
        ctx: Context,
        outcome: Callable[..., Outcome],
    ) -> Outcome:
        try:
            self._store.update(
                claim.with_status(status, ctx.now, error=error, request_id=request_id)
            )
        except StoreError as exc:
            log.error("recording the failed scale-out #%d failed: %s", claim.seq, exc)
        if status == UNKNOWN:
            reason = (
                f"ScaleOutCluster outcome unknown, not resent (activity #{claim.seq} held in "
                f"flight until resolved): {error}"
            )
        else:
            reason = f"ScaleOutCluster refused: {error}"
        return outcome(report.ERROR, reason, request_id=request_id, activity_seq=claim.seq)

    def _lost_claim(self, policy: Policy, seq: int, ctx: Context, d: dict[str, Any]) -> Outcome:
        """Another invocation created activity ``seq`` first: report what now holds us back."""
        try:
            fresh = self._store.recent(policy.cluster_id, ctx.lookback)
        except StoreError as exc:
            return Outcome(
                policy.name,
                policy.cluster_id,
                report.ERROR,
                f"lost claim #{seq} and cannot re-read the store: {exc}",
                decision=d,
            )
        verdict = guard.check(policy, fresh, now=ctx.now)
        code = verdict.outcome or report.IN_FLIGHT
        reason = verdict.reason or f"scale-out #{seq} was claimed by a concurrent invocation"
        return Outcome(
            policy.name,
            policy.cluster_id,
            code,
            f"lost the claim for #{seq}: {reason}",
            decision=d,
            activity_seq=verdict.blocking_seq,
        )
