"""Alibaba Cloud OSS backend, in OSS's own dialect: the production store on Alibaba Cloud.

``EDGESCALER_STORE=oss://bucket/prefix``. Endpoint: ``EDGESCALER_OSS_ENDPOINT``, default the
region's internal endpoint ``https://oss-<region>-internal.aliyuncs.com`` (from a function in that
region: no public network, no traffic fees); the region is the endpoint's, else
``EDGESCALER_OSS_REGION``, else FC's ``FC_REGION``. Each store key is one object
``<prefix>/<key>``. The client is :class:`edgescaler.cloud.oss.OSSClient` (httpx, OSS signature
V4): no SDK, nothing to import until this store is opened.

**Create-only** is ``PutObject`` with ``x-oss-forbid-overwrite: true``. When the key exists OSS
answers HTTP 409 with error code ``FileAlreadyExists`` (EC 0026-00000002): another writer created
it first (:class:`ConflictError`). A 409 has other meanings on OSS, so only that code in the XML
body is a lost race; any other 409 (or an unreadable one) is a :class:`StoreError`. OSS answers
``If-None-Match`` with 501, so this store never sends it. Every create carries a one-off writer id
in its metadata (``x-oss-meta-edgescaler-writer``): when an attempt whose answer was lost is
retried and the retry finds the key, the id tells "my own first attempt landed" from "someone
else won".

**Start-up check.** ``x-oss-forbid-overwrite`` does not protect a bucket with versioning
(reportedly: a versioned bucket keeps both writes as versions), and an endpoint or proxy that
drops the header would let two invocations both "win" and both scale out. So a new store
(``probe=True``) first reads ``GetBucketVersioning`` and refuses (``ConfigError``) a bucket whose
versioning is ``Enabled`` or ``Suspended`` (once enabled it can never be switched off), then
creates a unique probe key create-only twice and requires the second write to fail with
``FileAlreadyExists``; otherwise ``ConfigError``. The probe key (under ``<prefix>/.probe/``,
outside every listed key) is deleted afterwards, best effort. A passed check is remembered per
(endpoint, bucket) for the life of the process, so a warm FC instance checks once.

**Credentials** are given by the caller (FC's ``context.credentials``, else the
``ALIBABA_CLOUD_*`` variables, read by the handler or CLI): this module reads no environment. The
STS token is sent as ``x-oss-security-token``; neither it nor the key secret ever appears in an
error. RAM actions used: ``oss:PutObject``, ``oss:GetObject`` (also HEAD), ``oss:ListObjects``,
``oss:DeleteObject`` (the probe object) and ``oss:GetBucketVersioning``.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.oss import (
    OSSClient,
    OSSFailure,
    default_endpoint,
    endpoint_region,
    valid_region,
)
from edgescaler.errors import ConfigError, ConflictError, StoreError
from edgescaler.store.base import Store, normalize_prefix, probe_once

PROBE_DIR = ".probe/"
WRITER_META = "edgescaler-writer"  # x-oss-meta-edgescaler-writer: the one-off id of a create
LOST_RACE = "FileAlreadyExists"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def resolve_region(endpoint: str | None, region: str | None) -> str:
    """The signing region: the OSS endpoint's own, else ``region``; ConfigError if neither."""
    found = endpoint_region(endpoint) or (region or "").strip()
    if not found:
        raise ConfigError(
            "oss store: no region: set EDGESCALER_OSS_REGION (FC sets FC_REGION) or "
            "EDGESCALER_OSS_ENDPOINT to the bucket's endpoint"
        )
    if not valid_region(found):
        raise ConfigError(f"oss store: invalid region {found[:40]!r} (expected e.g. cn-hangzhou)")
    return found


class OSSStore(Store):
    """Objects ``<prefix>/<key>`` in ``bucket``; see the module docstring for the guarantees.

    ``http`` (an ``httpx.Client``) and ``clock`` are passed to the client (tests).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        credentials: Credentials,
        region: str | None = None,
        endpoint: str | None = None,
        probe: bool = True,
        http: Any = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not _BUCKET.match(bucket):
            raise ConfigError(
                f"oss store: invalid bucket name {bucket[:70]!r} "
                "(3-63 characters: lower-case letters, digits, hyphens)"
            )
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)
        self._root = f"{self.prefix}/" if self.prefix else ""
        self.region = resolve_region(endpoint, region)
        self.endpoint = (endpoint or default_endpoint(self.region)).rstrip("/")
        try:
            self.client = OSSClient(
                self.endpoint, bucket, self.region, credentials, http=http, clock=clock
            )
        except ValueError as exc:
            raise ConfigError(f"EDGESCALER_OSS_ENDPOINT: {exc}") from None
        self._page_size = 1000
        if probe:
            self._probe_once()

    # -- messages -------------------------------------------------------------------------
    def _host(self) -> str:
        return self.endpoint.partition("://")[2]

    def _where(self) -> str:
        return f"oss store oss://{self.bucket}/{self.prefix} at {self._host()}"

    def describe(self) -> str:
        return f"oss://{self.bucket}/{self.prefix} ({self._host()})"

    def _error(self, op: str, key: str, failure: OSSFailure) -> StoreError:
        return StoreError(f"{self._where()}: {op} {key}: {failure.describe()}")

    def _full(self, key: str) -> str:
        return self._root + key

    # -- primitives -----------------------------------------------------------------------
    def _create(self, key: str, data: bytes) -> None:
        full = self._full(key)
        writer = uuid.uuid4().hex
        try:
            self.client.put_object(full, data, forbid_overwrite=True, meta={WRITER_META: writer})
        except OSSFailure as failure:
            if failure.status == 409 and failure.code == LOST_RACE:
                if failure.maybe_applied and self._owner(key, full) == writer:
                    return  # an earlier attempt of ours created it; its answer was lost
                raise ConflictError(key) from None
            raise self._error("create", key, failure) from None

    def _owner(self, key: str, full: str) -> str | None:
        """The writer id of the object at ``full``; None if absent, "" if it carries none."""
        try:
            headers = self.client.head_object(full)
        except OSSFailure as failure:
            raise self._error("read", key, failure) from None
        if headers is None:
            return None
        return headers.get(f"x-oss-meta-{WRITER_META}", "")

    def _put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(self._full(key), data)
        except OSSFailure as failure:
            raise self._error("write", key, failure) from None

    def _get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(self._full(key))
        except OSSFailure as failure:
            raise self._error("read", key, failure) from None

    def _list(self, prefix: str) -> list[str]:
        try:
            keys = self.client.list_keys(self._full(prefix), page_size=self._page_size)
        except OSSFailure as failure:
            raise self._error("list", prefix, failure) from None
        return sorted(k[len(self._root) :] for k in keys if k.startswith(self._root))

    # -- start-up check -------------------------------------------------------------------
    def _probe_once(self) -> None:
        probe_once(("oss", self.endpoint, self.bucket), self.probe)

    def probe(self) -> None:
        """Refuse a versioned bucket, then prove that the endpoint enforces
        ``x-oss-forbid-overwrite``; ConfigError if either fails."""
        try:
            status = self.client.versioning()
        except OSSFailure as failure:
            raise StoreError(
                f"{self._where()}: GetBucketVersioning: {failure.describe()} "
                "(the store needs oss:GetBucketVersioning on the bucket)"
            ) from None
        if status is not None:
            raise ConfigError(
                f"{self._where()}: bucket versioning is {status[:20]}; x-oss-forbid-overwrite "
                "does not protect a versioned bucket; refusing to run: use a bucket that never "
                "had versioning enabled"
            )
        key = f"{PROBE_DIR}{uuid.uuid4().hex}"
        full = self._full(key)
        body = b'{"probe": "edgescaler create-only check"}\n'
        refusal = ConfigError(
            f"{self._where()} does not enforce create-only writes "
            "(x-oss-forbid-overwrite: true); refusing to run: concurrent invocations could "
            "scale out twice"
        )
        try:
            self.client.put_object(full, body, forbid_overwrite=True)
        except OSSFailure as failure:
            if failure.status == 501 or failure.code == "NotImplemented":
                raise refusal from None
            raise self._error("probe", key, failure) from None
        try:
            try:
                self.client.put_object(full, body, forbid_overwrite=True)
            except OSSFailure as failure:
                if failure.status == 409 and failure.code == LOST_RACE:
                    return
                if failure.status == 501 or failure.code == "NotImplemented":
                    raise refusal from None
                raise self._error("probe", key, failure) from None
            raise refusal
        finally:
            # An orphan probe object is harmless; the answer above is what matters.
            with contextlib.suppress(OSSFailure):
                self.client.delete_object(full)
