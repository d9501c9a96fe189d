"""Activity stores: the create-only log behind cooldowns and exactly-once scale-outs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgescaler.errors import ConfigError
from edgescaler.store.base import Activity, Store

if TYPE_CHECKING:
    from edgescaler.cloud.credentials import Credentials

__all__ = ["Activity", "Store", "open_store"]


def open_store(
    url: str, *, s3_endpoint: str | None = None, credentials: Credentials | None = None
) -> Store:
    """Open the store named by ``EDGESCALER_STORE``.

    ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; ``s3://bucket/prefix``
    (S3 protocol: Alibaba OSS, MinIO, AWS S3) at ``s3_endpoint`` (``EDGESCALER_S3_ENDPOINT``;
    None means AWS S3), which probes the endpoint for conditional writes; ``credentials`` (FC's
    per-invocation STS credentials) are used for it when given; ``memory://`` (tests,
    ``plan``). Backends are imported only when used.
    """
    if url.startswith("sqlite:///"):
        from edgescaler.store.sqlite import SQLiteStore

        path = url[len("sqlite:///") :]
        if not path:
            raise ConfigError("EDGESCALER_STORE: sqlite:/// needs a file path")
        return SQLiteStore(path)
    if url.startswith("s3://"):
        from edgescaler.store.s3 import S3Store

        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket or "?" in url or "#" in url:
            raise ConfigError(f"EDGESCALER_STORE: expected s3://bucket/prefix, got {url[:80]!r}")
        return S3Store(bucket, prefix, endpoint_url=s3_endpoint, credentials=credentials)
    if url == "memory://":
        from edgescaler.store.memory import MemoryStore

        return MemoryStore()
    raise ConfigError(
        f"EDGESCALER_STORE: unsupported store {url[:80]!r} "
        "(use sqlite:///path.db, s3://bucket/prefix or memory://)"
    )
