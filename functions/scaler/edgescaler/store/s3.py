"""S3-protocol backend: MinIO, AWS S3 (for Alibaba OSS use ``oss://``, :mod:`edgescaler.store.oss`).

``EDGESCALER_STORE=s3://bucket/prefix`` with ``EDGESCALER_S3_ENDPOINT`` (MinIO: its URL; AWS S3:
unset). Each store key is one object ``<prefix>/<key>``. OSS's S3-compatible endpoint
(``https://s3.oss-<region>.aliyuncs.com``) answers ``If-None-Match`` with 501, so the probe below
refuses it.

**Create-only** is ``PutObject`` with ``If-None-Match: *``: HTTP 412 ``PreconditionFailed``
means another writer created the key first (:class:`ConflictError`). HTTP 409
``ConditionalRequestConflict`` means a concurrent conditional write to the key was in progress:
the key is re-read; if it now exists the other writer won, else the create is retried a few
times with a short jittered backoff, and :class:`StoreError` if still undecided. Every
create-only write carries a one-off writer id in its metadata, so that when botocore retried a
write whose first attempt did land (response lost, then 412 on the retry) the store can tell
"I won" from "someone else won" instead of guessing.

**Probe.** An endpoint that ignores ``If-None-Match`` would let two concurrent invocations both
"win" and both scale out. So a new store (``probe=True``) first creates a unique probe key
create-only, then creates it again create-only, and requires the second write to fail with 412;
otherwise :class:`ConfigError`. The probe key is deleted afterwards (best effort, under
``<prefix>/.probe/``, outside every key the store lists). A passed probe is remembered per
(endpoint, bucket) for the life of the process, so a warm FC instance probes once.

**Credentials.** boto's default chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN``, profiles, ...). For OSS on FC: when ``AWS_ACCESS_KEY_ID`` is unset and
``ALIBABA_CLOUD_ACCESS_KEY_ID`` is set, the ``ALIBABA_CLOUD_ACCESS_KEY_ID`` /
``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` / ``ALIBABA_CLOUD_SECURITY_TOKEN`` values are passed to the
client explicitly (OSS accepts Alibaba Cloud AccessKeys and STS tokens on its S3 endpoint).
Explicit ``credentials=`` win over both.

**Client.** Signature V4; short timeouts (connect 3 s, read 5 s) and botocore's "standard" retries
with ``max_attempts=2`` (botocore counts *retries* there: 3 attempts in all), so an unreachable
store fails the invocation quickly (fail closed) instead of eating its time budget.
Addressing style: *virtual-hosted* for ``*.aliyuncs.com`` (OSS refuses path-style requests) and
for AWS (no endpoint); *path* for any other endpoint (MinIO, moto, a proxy: no wildcard DNS
needed). Flexible checksums are only sent when an operation requires them: with the newer
botocore defaults an upload over HTTPS would use ``aws-chunked`` encoding, which OSS rejects.

boto3/botocore are imported lazily inside functions: importing this module costs nothing at FC
cold start unless an S3 store is opened. Every botocore failure (unreachable endpoint, bad
credentials, AccessDenied, timeouts) becomes a one-line :class:`StoreError` naming the store and
the error code, never a credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.credentials import checked as checked_credential
from edgescaler.cloud.credentials import from_env as alibaba_from_env
from edgescaler.errors import ConfigError, ConflictError, StoreError
from edgescaler.outside import message as outside_message
from edgescaler.sensitive import Secret
from edgescaler.store.base import Store, normalize_prefix, probe_once

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
MAX_BODY = 4 * 1024 * 1024  # an activity is ~1-3 kB
MAX_LIST_PAGES = 100  # of 1,000 keys: far beyond a day of one cluster's activity
MAX_RETRIES = 2  # botocore's retries "max_attempts": retries after the first try
CREATE_TRIES = 4  # our own tries of a create-only write answered 409 ConditionalRequestConflict
PROBE_DIR = ".probe/"
WRITER_META = "edgescaler-writer"  # x-amz-meta-edgescaler-writer: the one-off id of a create

_OSS_HOST = re.compile(r"^(?:s3\.)?oss-(?P<region>[a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com$")

_loader: Any = None
_loader_lock = threading.Lock()
# Clients built from explicit credentials, reused by later invocations of a warm FC instance
# (building one costs ~70 ms of CPU). Keyed by a hash of the credentials, so rotated STS
# credentials get a new client; the oldest is dropped beyond a few.
_clients: dict[tuple[str, ...], Any] = {}
_clients_lock = threading.Lock()
_MAX_CLIENTS = 4


def oss_region(endpoint_url: str | None) -> str | None:
    """The region of an OSS endpoint, None for other endpoints.

    ``https://s3.oss-cn-hangzhou.aliyuncs.com`` (and ``-internal``) → ``cn-hangzhou``.
    """
    if not endpoint_url:
        return None
    match = _OSS_HOST.match((urlsplit(endpoint_url).hostname or "").lower())
    return match.group("region") if match else None


def addressing_style(endpoint_url: str | None) -> str:
    """Virtual-hosted for AWS and OSS (which refuses path-style), path for other endpoints."""
    if not endpoint_url:
        return "virtual"
    host = (urlsplit(endpoint_url).hostname or "").lower()
    return "virtual" if host.endswith(".aliyuncs.com") else "path"


def client_credentials(
    env: Mapping[str, str], explicit: Credentials | None = None
) -> Credentials | None:
    """The credentials to hand to the client explicitly, or None for boto's default chain
    (profiles, instance roles).

    ``explicit`` first; then ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``
    of ``env``; then its ``ALIBABA_CLOUD_*`` variables. A half-set key pair is a ConfigError.
    """
    if explicit is not None:
        return explicit
    aws_id = env.get("AWS_ACCESS_KEY_ID", "").strip()
    aws_secret = env.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if aws_id or aws_secret:
        if not (aws_id and aws_secret):
            raise ConfigError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: set both or neither")
        token = env.get("AWS_SESSION_TOKEN", "").strip()
        # Refused by name, never by value, like the ALIBABA_CLOUD_* ones (a line break in a
        # header value would be quoted back by the HTTP library).
        checked = {
            name: checked_credential(value, name)
            for name, value in (
                ("AWS_ACCESS_KEY_ID", aws_id),
                ("AWS_SECRET_ACCESS_KEY", aws_secret),
                ("AWS_SESSION_TOKEN", token),
            )
        }
        return Credentials(
            checked["AWS_ACCESS_KEY_ID"],
            Secret(checked["AWS_SECRET_ACCESS_KEY"]),
            Secret(checked["AWS_SESSION_TOKEN"]) if token else None,
        )
    return alibaba_from_env(env)


class _Failure(Exception):
    """One botocore failure, reduced to what we branch on and may print."""

    def __init__(self, code: str, status: int | None, retries: int, detail: str) -> None:
        self.code = code
        self.status = status
        self.retries = retries
        self.detail = detail
        super().__init__(code)


def _shared_loader(session: Any) -> Any:
    """One botocore data loader per process: the S3 service model is parsed once, not per
    client (about 150 ms → 15 ms per new client), while credentials still resolve per session."""
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = session.get_component("data_loader")
        return _loader


def _client_config(endpoint_url: str | None) -> Any:
    from botocore.config import Config

    options: dict[str, Any] = {
        "signature_version": "s3v4",
        "s3": {"addressing_style": addressing_style(endpoint_url)},
        "connect_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
        "retries": {"max_attempts": MAX_RETRIES, "mode": "standard"},
    }
    try:
        return Config(
            **options,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
    except TypeError:  # botocore < 1.36 knows neither option and sends no flexible checksums
        return Config(**options)


class S3Store(Store):
    """Objects ``<prefix>/<key>`` in ``bucket``; see the module docstring for the guarantees.

    ``client`` (a botocore/boto3 S3 client) replaces the one built from ``endpoint_url``,
    ``region`` and the credentials; it is not closed by :meth:`close`. ``env`` is the
    environment the caller read (the store reads none itself): it supplies the credentials when
    ``credentials`` is None (see :func:`client_credentials`) and the default region.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
        probe: bool = True,
        credentials: Credentials | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ConfigError(f"s3 store: invalid bucket name {bucket!r}")
        env = env if env is not None else {}
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)
        self._root = f"{self.prefix}/" if self.prefix else ""
        self._owns_client = client is None
        # Values to scrub from error text (botocore never prints them; this is a second fence).
        self._secrets: tuple[Secret, ...] = ()
        self.endpoint_url: str | None = endpoint_url
        if client is None:
            client = self._make_client(endpoint_url, region, credentials, env)
        else:
            self.endpoint_url = endpoint_url or getattr(client.meta, "endpoint_url", None)
        self.client: Any = client
        self._page_size = 1000
        if probe:
            self._probe_once()

    # -- client ---------------------------------------------------------------------------
    def _make_client(
        self,
        endpoint_url: str | None,
        region: str | None,
        credentials: Credentials | None,
        env: Mapping[str, str],
    ) -> Any:
        try:
            import botocore.session
        except ImportError:  # pragma: no cover - depends on the install
            raise ConfigError("s3 store needs boto3: pip install 'edgescaler[s3]'") from None
        creds = client_credentials(env, credentials)
        kwargs: dict[str, Any] = {}
        if creds is not None:
            secret = creds.access_key_secret.reveal()
            token = creds.security_token.reveal() if creds.security_token else None
            kwargs = {"aws_access_key_id": creds.access_key_id, "aws_secret_access_key": secret}
            if token:
                kwargs["aws_session_token"] = token
            self._secrets += tuple(s for s in (creds.access_key_secret, creds.security_token) if s)
        region = (
            region
            or oss_region(endpoint_url)
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        cache_key: tuple[str, ...] | None = None
        if creds is not None:
            # The default chain (creds None) is resolved per session and must stay so; explicit
            # credentials are fixed for the client's life, so the client can be shared.
            digest = hashlib.sha256("\0".join(map(str, kwargs.values())).encode()).hexdigest()
            cache_key = (endpoint_url or "", region, digest)
            with _clients_lock:
                cached = _clients.get(cache_key)
            if cached is not None:
                self._owns_client = False
                return cached
        config = _client_config(endpoint_url)
        try:
            session = botocore.session.get_session()
            session.register_component("data_loader", _shared_loader(session))
            client = session.create_client(
                "s3", region_name=region, endpoint_url=endpoint_url, config=config, **kwargs
            )
        except Exception as exc:  # botocore raises many unrelated types for a bad setup
            detail = self._scrub(f"{type(exc).__name__}: {exc}")
            raise ConfigError(f"{self._where()}: cannot build client: {detail}") from None
        if cache_key is not None:
            self._owns_client = False  # shared from now on: close() must leave it open
            with _clients_lock:
                _clients[cache_key] = client
                while len(_clients) > _MAX_CLIENTS:
                    _clients.pop(next(iter(_clients)))
        return client

    # -- messages -------------------------------------------------------------------------
    def _where(self) -> str:
        host = urlsplit(self.endpoint_url).netloc if self.endpoint_url else ""
        at = f" at {host}" if host else ""
        return f"s3 store s3://{self.bucket}/{self.prefix}{at}"

    def describe(self) -> str:
        host = urlsplit(self.endpoint_url).netloc if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}" + (f" ({host})" if host else "")

    def _scrub(self, text: str, limit: int = 300) -> str:
        return outside_message(text, limit, self._secrets)

    def _error(self, op: str, key: str, failure: _Failure) -> StoreError:
        status = f" (HTTP {failure.status})" if failure.status else ""
        return StoreError(f"{self._where()}: {op} {key}: {failure.code}{status}: {failure.detail}")

    # -- calls ----------------------------------------------------------------------------
    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        """``client.<op>(**kwargs)`` with every botocore error turned into :class:`_Failure`.

        A ``Body`` in the response is read here, inside the same guard (a read can time out).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response: dict[str, Any] = getattr(self.client, op)(**kwargs)
            body = response.get("Body")
            if body is not None:
                data = body.read(MAX_BODY + 1)
                if len(data) > MAX_BODY:
                    raise _Failure("ResponseTooLarge", None, 0, f"more than {MAX_BODY} bytes")
                response["Body"] = data
            return response
        except ClientError as exc:
            err = exc.response.get("Error", {})
            meta = exc.response.get("ResponseMetadata", {})
            status = meta.get("HTTPStatusCode")
            code = self._scrub(str(err.get("Code") or status or "ClientError"), 80)
            message = str(err.get("Message") or "")
            raise _Failure(
                code, status, int(meta.get("RetryAttempts", 0)), self._scrub(message)
            ) from None
        except (BotoCoreError, OSError) as exc:
            # Transport errors (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError),
            # NoCredentialsError, and a response body cut short.
            raise _Failure(type(exc).__name__, None, 0, self._scrub(str(exc))) from None

    def _full(self, key: str) -> str:
        return self._root + key

    def _owner(self, key: str, full: str) -> str | None:
        """The writer id of the object at ``full``; None if absent, "" if it carries none."""
        try:
            response = self._call("head_object", Bucket=self.bucket, Key=full)
        except _Failure as failure:
            if failure.status == 404:
                return None
            raise self._error("read", key, failure) from None
        metadata = response.get("Metadata") or {}
        return str(metadata.get(WRITER_META, ""))

    # -- primitives -----------------------------------------------------------------------
    def _create(self, key: str, data: bytes) -> None:
        full = self._full(key)
        writer = uuid.uuid4().hex
        # Did a botocore retry hide an attempt of ours that may have written the object (its
        # reply lost)? Then a 412 may be our own write, and the writer id decides.
        maybe_landed = False
        for attempt in range(1, CREATE_TRIES + 1):
            try:
                self._call(
                    "put_object",
                    Bucket=self.bucket,
                    Key=full,
                    Body=data,
                    IfNoneMatch="*",
                    Metadata={WRITER_META: writer},
                )
                return
            except _Failure as failure:
                maybe_landed = maybe_landed or failure.retries > 0
                if failure.status == 412:
                    if maybe_landed and self._owner(key, full) == writer:
                        return  # our earlier attempt created it; its answer was lost
                    raise ConflictError(key) from None
                if failure.status != 409:
                    raise self._error("create", key, failure) from None
            # 409: a concurrent conditional write was in progress. Who won, if anyone?
            owner = self._owner(key, full)
            if owner is not None:
                if owner == writer:
                    return
                raise ConflictError(key)
            if attempt < CREATE_TRIES:
                time.sleep(random.uniform(0.05, 0.15) * attempt)
        raise StoreError(
            f"{self._where()}: create {key}: ConditionalRequestConflict (HTTP 409) "
            f"{CREATE_TRIES} times and the key is still absent; outcome undecided"
        )

    def _put(self, key: str, data: bytes) -> None:
        try:
            self._call("put_object", Bucket=self.bucket, Key=self._full(key), Body=data)
        except _Failure as failure:
            raise self._error("write", key, failure) from None

    def _get(self, key: str) -> bytes | None:
        try:
            response = self._call("get_object", Bucket=self.bucket, Key=self._full(key))
        except _Failure as failure:
            if failure.code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._error("read", key, failure) from None
        return bytes(response["Body"])

    def _list(self, prefix: str) -> list[str]:
        full = self._full(prefix)
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full, "MaxKeys": self._page_size}
        for _ in range(MAX_LIST_PAGES):
            try:
                page = self._call("list_objects_v2", **kwargs)
            except _Failure as failure:
                raise self._error("list", prefix, failure) from None
            keys.extend(obj["Key"][len(self._root) :] for obj in page.get("Contents", []))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated"):
                return sorted(keys)
            if not token:  # the rest exists but cannot be asked for: not a listing
                raise StoreError(
                    f"{self._where()}: list {prefix}: truncated without a continuation token"
                )
            kwargs["ContinuationToken"] = token
        raise StoreError(f"{self._where()}: list {prefix}: more than {MAX_LIST_PAGES} pages")

    def close(self) -> None:
        if self._owns_client:
            close = getattr(self.client, "close", None)
            if close is not None:
                close()

    # -- probe ----------------------------------------------------------------------------
    def _probe_once(self) -> None:
        probe_once(("s3", self.endpoint_url or "aws", self.bucket), self.probe)

    def probe(self) -> None:
        """Prove that the endpoint enforces ``If-None-Match: *``; ConfigError if it does not.

        Writes one object under ``<prefix>/.probe/`` twice and deletes it (best effort).
        """
        key = f"{PROBE_DIR}{uuid.uuid4().hex}"
        full = self._full(key)
        body = b"edgescaler conditional-write probe\n"
        refusal = ConfigError(
            f"{self._where()} does not enforce conditional writes (If-None-Match: *); "
            "refusing to run: concurrent invocations could scale out twice"
        )
        try:
            self._call("put_object", Bucket=self.bucket, Key=full, Body=body, IfNoneMatch="*")
        except _Failure as failure:
            if failure.status == 501 or failure.code == "NotImplemented":
                raise refusal from None
            raise self._error("probe", key, failure) from None
        try:
            try:
                self._call("put_object", Bucket=self.bucket, Key=full, Body=body, IfNoneMatch="*")
            except _Failure as failure:
                if failure.status == 412:
                    return
                if failure.status == 501 or failure.code == "NotImplemented":
                    raise refusal from None
                raise self._error("probe", key, failure) from None
            raise refusal
        finally:
            # An orphan probe object is harmless; the answer above is what matters.
            with contextlib.suppress(_Failure):
                self._call("delete_object", Bucket=self.bucket, Key=full)
