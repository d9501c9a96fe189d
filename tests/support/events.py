"""Recorded FC events live in tests/events/*.json; this loads them (bytes, as FC delivers)."""

from __future__ import annotations

from pathlib import Path

EVENTS = Path(__file__).resolve().parent.parent / "events"


def load_event(name: str) -> bytes:
    return (EVENTS / name).read_bytes()
