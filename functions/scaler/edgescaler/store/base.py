"""The activity store (design.md §5): a per-cluster, create-only log of scale-out activities.

Keys ``activities/<cluster_id>/<seq:012d>`` hold one JSON :class:`Activity` each. A new activity
is written with a **create-only** write at ``last_seq + 1``: the writer that creates it owns the
scale-out; a concurrent writer gets :class:`~edgescaler.errors.ConflictError`, re-reads, and
finds the winner's activity in flight. Event keys (``events/<sha256>``) are claimed the same way so
that a redelivered trigger does nothing. Cooldown, in-flight state and history are derived from
the log, never from a mutable flag.

After the claim, only the activity's owner (or a later run resolving a task it can see) rewrites
that activity's record (status, task id); the set of keys and their order never change.

Backends implement four primitives (modelled on Powertools' idempotency persistence layer):
``_create`` (create-only), ``_put`` (overwrite), ``_get`` and ``_list``. Every backend must pass
``tests/functional/test_store_contract.py``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from edgescaler.activity import Activity
from edgescaler.errors import ConflictError, StoreError
from edgescaler.outside import quote as outside_quote

ACTIVITY_PREFIX = "activities/"
EVENT_PREFIX = "events/"


# Object stores prove create-only writes once per process per (kind, endpoint, bucket): a warm FC
# instance probes on its first run only.
_probed: set[tuple[str, ...]] = set()
_probed_lock = threading.Lock()


def normalize_prefix(prefix: str) -> str:
    """An object store's key prefix without empty parts: ``a//b/`` → ``a/b``; ``/`` → ``""``."""
    return "/".join(part for part in prefix.split("/") if part)


def probe_once(key: tuple[str, ...], probe: Callable[[], None]) -> None:
    """Run ``probe`` unless one with ``key`` has passed in this process; remember a pass."""
    with _probed_lock:
        if key in _probed:
            return
    probe()
    with _probed_lock:
        _probed.add(key)


def clear_probe_cache() -> None:
    """Forget every passed probe (tests; or after an endpoint changed its behaviour)."""
    with _probed_lock:
        _probed.clear()


def activity_key(cluster_id: str, seq: int) -> str:
    return f"{ACTIVITY_PREFIX}{cluster_id}/{seq:012d}"


def event_storage_key(event_key: str) -> str:
    # Hashed: event keys contain arbitrary text (rule ids, timestamps) unsafe in object names.
    return EVENT_PREFIX + hashlib.sha256(event_key.encode()).hexdigest()


class Store(ABC):
    """Shared logic over four backend primitives. Thread- and process-safe if they are."""

    # -- primitives ---------------------------------------------------------------------
    @abstractmethod
    def _create(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` only if absent; raise ConflictError if it exists."""

    @abstractmethod
    def _put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` unconditionally."""

    @abstractmethod
    def _get(self, key: str) -> bytes | None:
        """The data at ``key``, or None."""

    @abstractmethod
    def _list(self, prefix: str) -> list[str]:
        """All keys starting with ``prefix``, in ascending byte order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has nothing to release."""

    def describe(self) -> str:
        """Where the data lives, for messages (never credentials)."""
        return type(self).__name__

    # -- activity log ---------------------------------------------------------------------
    def seqs(self, cluster_id: str) -> list[int]:
        prefix = f"{ACTIVITY_PREFIX}{cluster_id}/"
        out = []
        for key in self._list(prefix):
            tail = key[len(prefix) :]
            if tail.isascii() and tail.isdigit():
                out.append(int(tail))
        return out

    def get(self, cluster_id: str, seq: int) -> Activity | None:
        raw = self._get(activity_key(cluster_id, seq))
        if raw is None:
            return None
        try:
            act = Activity.from_json(raw)
        except ValueError as exc:
            raise StoreError(f"{self.describe()}: {cluster_id} #{seq}: {exc}") from None
        if (act.cluster_id, act.seq) != (cluster_id, seq):  # an update would write elsewhere
            raise StoreError(
                f"{self.describe()}: {cluster_id} #{seq}: corrupt activity record: it says "
                f"#{act.seq} of {outside_quote(act.cluster_id)}"
            )
        return act

    def log(self, cluster_id: str, *, limit: int | None = None) -> list[Activity]:
        """The cluster's activities in seq order; with ``limit``, only the newest ``limit``."""
        seqs = self.seqs(cluster_id)
        if limit is not None:
            seqs = seqs[-limit:] if limit > 0 else []
        out = []
        for seq in seqs:
            act = self.get(cluster_id, seq)
            if act is not None:
                out.append(act)
        return out

    def recent(self, cluster_id: str, since: datetime) -> list[Activity]:
        """The activities created at or after ``since``, in seq order, plus the newest older one.

        Reads backwards from the newest and stops at the first ended activity older than
        ``since``, so the cost follows the window, not the length of the log. Open activities
        are never skipped: a new claim is only made when none is open, so every open activity
        is newer than any ended one after it.
        """
        out: list[Activity] = []
        for seq in reversed(self.seqs(cluster_id)):
            act = self.get(cluster_id, seq)
            if act is None:
                continue
            out.append(act)
            if act.created_at < since and not act.is_open:
                break
        return list(reversed(out))

    def last_seq(self, cluster_id: str) -> int:
        seqs = self.seqs(cluster_id)
        return seqs[-1] if seqs else 0

    def append(self, activity: Activity) -> Activity:
        """Create ``activity`` at its ``seq``; ConflictError if another writer got there first."""
        if activity.seq < 1:
            raise ValueError("seq starts at 1")
        self._create(activity_key(activity.cluster_id, activity.seq), activity.to_json())
        return activity

    def update(self, activity: Activity) -> Activity:
        """Rewrite an existing activity (status changes by its owner or a resolver)."""
        self._put(activity_key(activity.cluster_id, activity.seq), activity.to_json())
        return activity

    def clusters(self) -> list[str]:
        names = {k[len(ACTIVITY_PREFIX) :].split("/", 1)[0] for k in self._list(ACTIVITY_PREFIX)}
        return sorted(names)

    def history(
        self, *, cluster_id: str | None = None, policy: str | None = None, limit: int = 50
    ) -> list[Activity]:
        """Newest-first activities, optionally of one cluster and/or one policy."""
        clusters = [cluster_id] if cluster_id else self.clusters()
        acts: list[Activity] = []
        for cid in clusters:
            acts.extend(a for a in self.log(cid) if policy is None or a.policy == policy)
        acts.sort(key=lambda a: (a.created_at, a.seq), reverse=True)
        return acts[:limit]

    # -- event keys -----------------------------------------------------------------------
    def claim_event(
        self, event_key: str, now: datetime, detail: dict[str, Any] | None = None
    ) -> bool:
        """Record ``event_key`` create-only. True if this call recorded it, False if it was
        already there (a redelivery)."""
        body = json.dumps(
            {
                "event_key": event_key,
                "claimed_at": now.astimezone(timezone.utc).isoformat(),
                **(detail or {}),
            },
            sort_keys=True,
        ).encode()
        try:
            self._create(event_storage_key(event_key), body)
        except ConflictError:
            return False
        return True

    def export(self) -> Iterator[tuple[str, bytes]]:
        """Every key and its raw bytes, in key order: for backups, audits and the tests that
        prove no secret is ever stored."""
        for key in self._list(""):
            raw = self._get(key)
            if raw is not None:
                yield key, raw

    def event(self, event_key: str) -> dict[str, Any] | None:
        raw = self._get(event_storage_key(event_key))
        if raw is None:
            return None
        data: dict[str, Any] = json.loads(raw)
        return data
