"""One fake clock for both sides of a test: the emulator (float seconds) and the scaler
(``now`` as an aware UTC datetime, which also dates the signed CS requests)."""

from __future__ import annotations

from datetime import datetime, timezone


class FakeClock:
    """Wall seconds that move only when a test says so."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def dt(self) -> datetime:
        return datetime.fromtimestamp(self.now, tz=timezone.utc)
