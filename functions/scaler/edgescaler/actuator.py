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

from edgescaler import activity as lifecycle
from edgescaler import guard
from edgescaler.activity import Activity, Status
from edgescaler.cloud.model import ScaleOutResult
from edgescaler.deadline import Deadline
from edgescaler.decision import Decision
from edgescaler.errors import ConflictError, CSApiError, CSTransportError, SecretError, StoreError
from edgescaler.policy import Policy
from edgescaler.report import Outcome, OutcomeCode
from edgescaler.sensitive import Secret
from edgescaler.store.base import Store

log = logging.getLogger("edgescaler.actuator")


def _password_refused(ended: Activity) -> bool:
    """A refused call (nothing created) whose error names the login password."""
    return ended.status == Status.REJECTED and "password" in (ended.error or "").lower()


class ScaleOutAPI(Protocol):
    def scale_out(self, cluster_id: str, body: Mapping[str, Any]) -> ScaleOutResult: ...


class Passwords(Protocol):
    """Where login passwords come from (:class:`edgescaler.passwords.Passwords`)."""

    def get(self, policy: Policy) -> Secret: ...

    def forget(self, policy: Policy) -> bool: ...


@dataclass(frozen=True)
class Context:
    """What the actuator needs to know about the current run.

    ``lookback``: how far back the pipeline read the log (for re-reads after a lost claim);
    ``prior_tasks``: the cluster's scale-out task ids before this scale-out, those a resolution
    could otherwise adopt (:func:`~edgescaler.activity.adoptable`); kept in the claim so that an
    ambiguous POST can be resolved later.
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
            OutcomeCode.DRY_RUN,
            f"would add {decision.add}: {decision.explanation}",
            add=decision.add,
            decision=decision,
        )

    def record(self, activity: Activity) -> None:
        """Dry runs keep resolved task states in memory only."""


class ScaleOutActuator:
    """Claim, call ScaleOutCluster once, record.

    ``passwords.get(policy)`` resolves the ENS login password (environment or KMS); it is called
    only when a scale-out is about to be claimed, and a failure (SecretError) ends the attempt
    before the claim, so a missing password never holds the cluster. When the API refuses the
    password (a 4xx naming it: nothing was created), a cached KMS value is forgotten and fetched
    once more; if it changed (a rotated secret), the scale-out is claimed and sent once more.
    ``clock`` stamps each claim when it is made (the run's ``now`` without one).
    """

    def __init__(
        self,
        store: Store,
        cloud_for: Callable[[str], ScaleOutAPI],
        passwords: Passwords,
        *,
        deadline: Deadline | None = None,
        scale_out_seconds: float = 20.0,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._cloud_for = cloud_for
        self._passwords = passwords
        self._deadline = deadline
        self._scale_out_seconds = scale_out_seconds
        self._jitter = jitter

    def record(self, activity: Activity) -> None:
        self._store.update(activity)

    def execute(
        self, policy: Policy, decision: Decision, activities: Sequence[Activity], ctx: Context
    ) -> Outcome:
        late = self._too_late(policy, decision)
        if late is not None:  # before the password too: a slow KMS must not outlast the run
            return late
        try:  # resolve the password before claiming: a missing one must not block the cluster
            password = self._passwords.get(policy)
        except SecretError as exc:
            return self._outcome(policy, decision, OutcomeCode.ERROR, str(exc))
        out, ended = self._claim_and_send(policy, decision, activities, ctx, password)
        if ended is None or not _password_refused(ended) or not self._passwords.forget(policy):
            return out
        try:
            fresh = self._passwords.get(policy)
        except SecretError as exc:
            return self._outcome(policy, decision, OutcomeCode.ERROR, str(exc))
        if fresh == password:  # the same value again: nothing to retry with
            return out
        log.warning("%s: login password refused; retrying once with the refetched one", policy.name)
        # The refused call created nothing (a 4xx): one more claim, after it, is exactly-once safe.
        retried, _ = self._claim_and_send(policy, decision, [*activities, ended], ctx, fresh)
        return retried

    def _outcome(
        self, policy: Policy, decision: Decision, code: OutcomeCode, reason: str, **kw: Any
    ) -> Outcome:
        return Outcome(policy.name, policy.cluster_id, code, reason, decision=decision, **kw)

    def _claim_and_send(
        self,
        policy: Policy,
        decision: Decision,
        activities: Sequence[Activity],
        ctx: Context,
        password: Secret,
    ) -> tuple[Outcome, Activity | None]:
        """Claim ``last + 1`` of ``activities``, POST once, record. The outcome, and the ended
        activity when the POST was answered with a failure (None otherwise)."""
        name, cluster = policy.name, policy.cluster_id

        def outcome(code: OutcomeCode, reason: str, **kw: Any) -> Outcome:
            return self._outcome(policy, decision, code, reason, **kw)

        late = self._too_late(policy, decision)
        if late is not None:
            return late, None

        # The claim goes right after the snapshot the guard and the decision were made on, never
        # after a fresh read: anything appended since then must make this create-only write fail.
        seq = (activities[-1].seq if activities else 0) + 1
        # Stamped when it is made, not when the run began: other runs count CLAIM_GRACE and
        # RESOLVE_AFTER from created_at, and a long run (EDGESCALER_DEADLINE) may claim minutes
        # after its start, its POST still in flight when an older stamp would call it dead.
        claimed_at = self._now(ctx)
        claim = Activity(
            cluster_id=cluster,
            seq=seq,
            policy=name,
            add=decision.add,
            status=Status.CLAIMED,
            created_at=claimed_at,
            updated_at=claimed_at,
            event_key=ctx.event_key,
            trigger=ctx.trigger,
            ens_region_id=policy.scale_out.ens_region_id,
            instance_type=policy.scale_out.worker_instance_type,
            timeout_mins=policy.scale_out.timeout_mins,
            decision=decision.to_dict(),
            prior_tasks=ctx.prior_tasks,
        )
        try:
            self._store.append(claim)
        except ConflictError:
            return self._lost_claim(policy, seq, ctx, decision), None
        except StoreError as exc:
            return outcome(OutcomeCode.ERROR, f"store unavailable, not scaling: {exc}"), None

        body = policy.scale_out.body(decision.add, password.reveal())
        try:
            result = self._cloud_for(policy.region).scale_out(cluster, body)
        except CSApiError as exc:
            # Every state after the POST is stamped when its answer came: a hold or a backoff
            # counted from the run's start would be shorter by however long the run took.
            answered = self._now(ctx)
            if exc.throttled:
                return self._throttled(claim, activities, exc, answered, outcome), None
            ended = lifecycle.post_failed(
                claim,
                answered,
                error=str(exc),
                request_id=exc.request_id,
                may_have_acted=exc.status >= 500,
            )
            return self._finish_failed(ended, outcome), ended
        except CSTransportError as exc:
            ended = lifecycle.post_failed(
                claim,
                self._now(ctx),
                error=str(exc),
                request_id=None,
                may_have_acted=exc.may_have_acted,
            )
            return self._finish_failed(ended, outcome), ended
        finally:
            del body  # drop the only structure holding the clear password

        done = lifecycle.after_post(claim, result, self._now(ctx))
        note = ""
        try:
            self._store.update(done)
        except StoreError as exc:
            # The scale-out happened; the claim still holds the cluster (in flight), so nothing
            # can double it. The next run resolves the claim through the cluster's tasks.
            note = f" (warning: could not record the task id: {exc})"
            log.error("recording task %s for %s failed: %s", result.task_id, cluster, exc)
        return outcome(
            OutcomeCode.SCALED,
            decision.explanation + note,
            add=decision.add,
            task_id=result.task_id,
            request_id=result.request_id,
            activity_seq=seq,
        ), None

    def _throttled(
        self,
        claim: Activity,
        activities: Sequence[Activity],
        exc: CSApiError,
        answered: datetime,
        outcome: Callable[..., Outcome],
    ) -> Outcome:
        delay = guard.throttle_delay(activities, exc.retry_after, 0.5 + self._jitter() / 2)
        ended = lifecycle.post_throttled(
            claim, answered, error=str(exc), request_id=exc.request_id, retry_at=answered + delay
        )
        self._write(ended)
        return outcome(
            OutcomeCode.BACKOFF,
            f"ScaleOutCluster throttled, nothing created; retrying after "
            f"{int(delay.total_seconds())}s: {exc}",
            request_id=exc.request_id,
            activity_seq=claim.seq,
        )

    def _too_late(self, policy: Policy, decision: Decision) -> Outcome | None:
        """The ``deadline`` outcome when a whole scale-out no longer fits in the run."""
        if self._deadline is None or self._deadline.allows(self._scale_out_seconds):
            return None
        return self._outcome(
            policy,
            decision,
            OutcomeCode.DEADLINE,
            f"not starting a scale-out of +{decision.add}: {self._deadline.remaining():.0f}s "
            f"of the run left, a scale-out needs up to {self._scale_out_seconds:g}s",
        )

    def _now(self, ctx: Context) -> datetime:
        """The time now: the runtime's clock, else (tests without one) the run's start."""
        return self._clock() if self._clock is not None else ctx.now

    def _finish_failed(self, ended: Activity, outcome: Callable[..., Outcome]) -> Outcome:
        self._write(ended)
        if ended.status == Status.UNKNOWN:
            reason = (
                f"ScaleOutCluster outcome unknown, not resent (activity #{ended.seq} held in "
                f"flight until resolved): {ended.error}"
            )
        else:
            reason = f"ScaleOutCluster refused: {ended.error}"
        return outcome(
            OutcomeCode.ERROR, reason, request_id=ended.request_id, activity_seq=ended.seq
        )

    def _write(self, ended: Activity) -> None:
        try:
            self._store.update(ended)
        except StoreError as exc:
            log.error("recording the ended scale-out #%d failed: %s", ended.seq, exc)

    def _lost_claim(self, policy: Policy, seq: int, ctx: Context, decision: Decision) -> Outcome:
        """Another invocation created activity ``seq`` first: report what now holds us back."""
        try:
            fresh = self._store.recent(policy.cluster_id, ctx.lookback)
        except StoreError as exc:
            return Outcome(
                policy.name,
                policy.cluster_id,
                OutcomeCode.ERROR,
                f"lost claim #{seq} and cannot re-read the store: {exc}",
                decision=decision,
            )
        verdict = guard.check(policy, fresh, now=ctx.now)
        code = verdict.outcome or OutcomeCode.IN_FLIGHT
        reason = verdict.reason or f"scale-out #{seq} was claimed by a concurrent invocation"
        return Outcome(
            policy.name,
            policy.cluster_id,
            code,
            f"lost the claim for #{seq}: {reason}",
            decision=decision,
            activity_seq=verdict.blocking_seq,
        )
