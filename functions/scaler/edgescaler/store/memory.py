"""An in-memory store: the fake for unit tests and ``plan``; state dies with the process."""

from __future__ import annotations

import threading

from edgescaler.errors import ConflictError
from edgescaler.store.base import Store


class MemoryStore(Store):
    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _create(self, key: str, data: bytes) -> None:
        with self._lock:
            if key in self._data:
                raise ConflictError(key)
            self._data[key] = data

    def _put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._data[key] = data

    def _get(self, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(key)

    def _list(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(k for k in self._data if k.startswith(prefix))

    def describe(self) -> str:
        return "memory"
