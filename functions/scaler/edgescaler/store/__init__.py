"""Activity stores: the create-only log behind cooldowns and exactly-once scale-outs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from edgescaler.activity import Activity
from edgescaler.errors import ConfigError
from edgescaler.store.base import Store

if TYPE_CHECKING:
    from edgescaler.cloud.credentials import Credentials

__all__ = ["Activity", "Store", "open_store"]


def open_store(
    url: str,
    *,
    s3_endpoint: str | None = None,
    credentials: Credentials | None = None,
    oss_endpoint: str | None = None,
    oss_region: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Store:
    """Open the store named by ``EDGESCALER_STORE``.

    ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; ``oss://bucket/prefix``
    (Alibaba OSS in its own dialect) at ``oss_endpoint`` (``EDGESCALER_OSS_ENDPOINT``; None means
    the internal endpoint of ``oss_region``), signed with ``credentials`` (required);
    ``s3://bucket/prefix`` (S3 protocol: MinIO, AWS S3) at ``s3_endpoint``
    (``EDGESCALER_S3_ENDPOINT``; None means AWS S3), using ``credentials`` (FC's per-invocation
    STS credentials) when given, else the ones ``env`` holds (``AWS_*``,
    ``ALIBABA_CLOUD_*``; the store reads no environment itself); both object stores check
    the endpoint's create-only writes first; ``memory://`` (tests, ``plan``). Backends are
    imported only when used.
    """
    if url.startswith("sqlite:///"):
        from edgescaler.store.sqlite import SQLiteStore

        path = url[len("sqlite:///") :]
        if not path:
            raise ConfigError("EDGESCALER_STORE: sqlite:/// needs a file path")
        return SQLiteStore(path)
    if url.startswith("oss://"):
        bucket, _, prefix = url[len("oss://") :].partition("/")
        if not bucket or "?" in url or "#" in url:
            raise ConfigError(f"EDGESCALER_STORE: expected oss://bucket/prefix, got {url[:80]!r}")
        if credentials is None:
            raise ConfigError(
                "oss store: no credentials: give the function a role, or set "
                "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET"
            )
        from edgescaler.store.oss import OSSStore

        return OSSStore(
            bucket, prefix, credentials=credentials, region=oss_region, endpoint=oss_endpoint
        )
    if url.startswith("s3://"):
        from edgescaler.store.s3 import S3Store

        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket or "?" in url or "#" in url:
            raise ConfigError(f"EDGESCALER_STORE: expected s3://bucket/prefix, got {url[:80]!r}")
        return S3Store(bucket, prefix, endpoint_url=s3_endpoint, credentials=credentials, env=env)
    if url == "memory://":
        from edgescaler.store.memory import MemoryStore

        return MemoryStore()
    raise ConfigError(
        f"EDGESCALER_STORE: unsupported store {url[:80]!r} "
        "(use sqlite:///path.db, oss://bucket/prefix, s3://bucket/prefix or memory://)"
    )
