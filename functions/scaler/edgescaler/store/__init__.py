"""Activity stores: the create-only log behind cooldowns and exactly-once scale-outs."""

from __future__ import annotations

from edgescaler.errors import ConfigError
from edgescaler.store.base import Activity, Store

__all__ = ["Activity", "Store", "open_store"]


def open_store(url: str, **options: str | None) -> Store:
    """Open the store named by ``EDGESCALER_STORE``.

    ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; ``memory://`` (tests,
    ``plan``). Backends are imported only when used.
    """
    if url.startswith("sqlite:///"):
        from edgescaler.store.sqlite import SQLiteStore

        path = url[len("sqlite:///") :]
        if not path:
            raise ConfigError("EDGESCALER_STORE: sqlite:/// needs a file path")
        return SQLiteStore(path)
    if url == "memory://":
        from edgescaler.store.memory import MemoryStore

        return MemoryStore()
    raise ConfigError(
        f"EDGESCALER_STORE: unsupported store {url!r} (use sqlite:///path.db or memory://)"
    )
