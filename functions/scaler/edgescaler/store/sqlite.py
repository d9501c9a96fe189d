"""SQLite backend: the embedded default (``EDGESCALER_STORE=sqlite:///path.db``).

Safe across threads and processes on one machine: WAL journal, a busy timeout, and the primary
key as the create-only guarantee (``INSERT`` fails with IntegrityError when the key exists).
Not for several FC instances: their ``/tmp`` directories are separate disks — use the S3-protocol
store there.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from edgescaler.errors import ConflictError, StoreError
from edgescaler.store.base import Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID
"""


_INIT_TRIES = 8  # pauses of 10 ms doubling: about 1.3 s in all


class SQLiteStore(Store):
    def __init__(self, path: str | Path, *, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._timeout = timeout
        self._local = threading.local()
        try:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._init_schema()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from None

    def _init_schema(self) -> None:
        # Several processes creating the same new file at once: while it is still in
        # rollback-journal mode, switching it to WAL can fail with "database is locked" at once,
        # without waiting for the busy timeout (SQLite's deadlock avoidance). Both statements are
        # idempotent, so try again after a short pause.
        for attempt in range(_INIT_TRIES):
            try:
                conn = self._conn()
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == _INIT_TRIES - 1:
                    raise
            time.sleep(0.01 * 2**attempt)

    def _conn(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections must not be shared across threads.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                str(self.path), timeout=self._timeout, isolation_level=None, check_same_thread=True
            )
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def _run(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from None

    def _create(self, key: str, data: bytes) -> None:
        try:
            self._run("INSERT INTO kv (key, value) VALUES (?, ?)", (key, data))
        except sqlite3.IntegrityError:
            raise ConflictError(key) from None

    def _put(self, key: str, data: bytes) -> None:
        self._run("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, data))

    def _get(self, key: str) -> bytes | None:
        rows = self._run("SELECT value FROM kv WHERE key = ?", (key,))
        if not rows:
            return None
        value = rows[0][0]
        assert isinstance(value, bytes | memoryview)
        return bytes(value)

    def _list(self, prefix: str) -> list[str]:
        # Range scan on the primary key; prefix + U+FFFF sorts after every key with the prefix.
        rows = self._run(
            "SELECT key FROM kv WHERE key >= ? AND key < ? ORDER BY key",
            (prefix, prefix + "\uffff"),
        )
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def describe(self) -> str:
        return f"sqlite:///{self.path}"
