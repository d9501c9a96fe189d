"""Redelivered triggers do nothing; new triggers are judged on their own.

The FC handler runs in-process against the emulator and one SQLite store, on one fake clock.
FC delivers an asynchronous event at least once (and retries it), so the same timer tick or the
same idempotent manual request may arrive several times: its event key makes every delivery
after the first a ``duplicate_event``, even after the cooldown has passed. A *different* tick is
a new trigger: it must be stopped by the cooldown, not mistaken for a duplicate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.events import EVENTS
from tests.support.world import FakeClock, World, build_world

TICK = {"triggerName": "every-minute", "triggerTime": "2026-11-27T07:05:00Z", "payload": ""}
NEXT_TICK = {**TICK, "triggerTime": "2026-11-27T07:06:00Z"}
MANUAL = {"policies": ["edge-a"], "request_id": "ops-2026-11-27-01", "reason": "pre-warm"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(tmp_path: Path, clock: FakeClock) -> Iterator[World]:
    with build_world(tmp_path, ["edge-a"], clock=clock, cooldown="10m", task_delay=120) as w:
        yield w
        w.check_invariant()


def test_the_same_timer_event_three_times_scales_once(world: World, clock: FakeClock) -> None:
    first = world.outcome(TICK)
    assert first["outcome"] == "scaled" and first["add"] == 3
    clock.advance(1)
    second = world.outcome(json.dumps(TICK))  # byte-identical redelivery
    clock.advance(20 * 60)  # an FC retry long after the cooldown: still the same tick
    third = world.outcome(TICK)

    assert [o["outcome"] for o in (second, third)] == ["duplicate_event"] * 2
    key = "timer:every-minute:2026-11-27T07:05:00Z"
    assert all(key in o["reason"] for o in (second, third))
    (post,) = world.posts()
    assert post["task_id"] == first["task_id"]
    (act,) = world.activities(world.clusters["edge-a"])
    assert act.task_id == first["task_id"] and act.event_key == key


def test_a_manual_request_id_sent_twice_scales_once(world: World, clock: FakeClock) -> None:
    first = world.outcome(MANUAL)
    clock.advance(30)
    second = world.outcome(MANUAL)
    assert (first["outcome"], second["outcome"]) == ("scaled", "duplicate_event")
    assert "manual:ops-2026-11-27-01" in second["reason"]
    (post,) = world.posts()
    assert post["task_id"] == first["task_id"]
    (act,) = world.activities(world.clusters["edge-a"])
    assert act.event_key == "manual:ops-2026-11-27-01"
    # The event's record says who asked and why (the request's detail), not just the trigger.
    stored = world.stored_text()
    assert '"reason": "pre-warm"' in stored and '"request_id": "ops-2026-11-27-01"' in stored

    # The same request without its id is a new request, and the cooldown holds it back.
    anonymous = world.outcome({"policies": ["edge-a"]})
    assert anonymous["outcome"] == "cooling_down"
    assert len(world.posts()) == 1


def test_the_next_tick_is_a_new_trigger_held_by_the_cooldown(
    world: World, clock: FakeClock
) -> None:
    first = world.outcome(TICK)
    assert first["outcome"] == "scaled"
    clock.advance(60)
    second = world.outcome(NEXT_TICK)
    assert second["outcome"] == "cooling_down", second
    assert first["task_id"] in second["reason"] and "#1 " in second["reason"]
    assert second["activity_seq"] == 1
    assert len(world.posts()) == 1
    store = world.store()
    try:  # both ticks are recorded: the second was handled, not dropped as a duplicate
        assert store.event("timer:every-minute:2026-11-27T07:06:00Z") is not None
        assert store.event("timer:every-minute:2026-11-27T07:05:00Z") is not None
    finally:
        store.close()


def test_eventbridge_redelivery_is_a_duplicate(world: World, clock: FakeClock) -> None:
    event = json.loads((EVENTS / "eventbridge-alert.json").read_text())
    assert world.outcome(event)["outcome"] == "scaled"
    clock.advance(30)
    assert world.outcome(event)["outcome"] == "duplicate_event"  # same source + id
    clock.advance(30)
    other = {**event, "id": "another-delivery-id"}
    assert world.outcome(other)["outcome"] == "cooling_down"  # a new alarm, judged on its own
    assert len(world.posts()) == 1
