"""KMS Secrets Manager: ``GetSecretValue`` over httpx, signed by our own ACS3 signer, and a cache.

    GetSecretValue   POST https://kms.{region}.aliyuncs.com/?SecretName=...   (RPC, 2016-01-20)

The request is what the official SDK (``alibabacloud-tea-openapi`` 0.4.6 ``call_api`` with
``style=RPC``, ``req_body_type=formData``) sends for it, signed with ACS3-HMAC-SHA256: the
parameters in the query string, ``x-acs-action: GetSecretValue``, ``x-acs-version: 2016-01-20``,
an empty body (``x-acs-content-sha256`` of ``b""``) and no ``content-type`` (the SDK sends none
without a body; tests/unit/test_kms_oracle.py holds us to it). The official KMS SDK costs ~0.84 s at
import and pulls aiohttp/requests/APScheduler (reference/alibaba-today.md §5); this module needs
only httpx, which the function already ships.

Use::

    client = KMSClient("cn-hangzhou", lambda: credentials, endpoint=settings.kms_endpoint)
    cache = SecretCache(lambda name: client.get_secret_value(name).value, ttl=300)
    password = cache.get("edgescaler/ens-login-password")      # a Secret
    ...                                                         # ENS/CS rejected the password:
    cache.invalidate("edgescaler/ens-login-password")           # refetch once, then give up

Endpoint: ``https://kms.{region}.aliyuncs.com``; ``EDGESCALER_KMS_ENDPOINT`` overrides it (a local
fake, or ``https://kms-vpc.{region}.aliyuncs.com`` from a VPC).

Failures are :class:`~edgescaler.errors.KMSApiError` (KMS answered with an error: code, request id,
status) or :class:`~edgescaler.errors.KMSTransportError` (no usable answer), both
:class:`~edgescaler.errors.SecretError`. The secret's value is only ever held as a
:class:`~edgescaler.sensitive.Secret`: it is never logged, never put in an error, and the response
body it came in is dropped as soon as it is parsed.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from edgescaler import safejson
from edgescaler.cloud import acs
from edgescaler.cloud.acs import Abandoned
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.signing import encode_query, new_nonce
from edgescaler.errors import ConfigError, KMSApiError, KMSTransportError
from edgescaler.outside import message as outside_message
from edgescaler.sensitive import Secret

API_VERSION = "2016-01-20"
ACTION = "GetSecretValue"

log = logging.getLogger("edgescaler.kms")

# KMS secret names: letters, digits and _/+=.@- (1..192); an ARN (acs:kms:...:secret/NAME) too.
_NAME_RE = re.compile(r"^[A-Za-z0-9_/+=.@:-]{1,256}$")
_MAX_ANSWER = 256 * 1024  # a secret is at most 64 kB; its answer a little more
_MAX_ERROR_TEXT = 200


def endpoint_for(region: str, override: str | None = None) -> str:
    """The KMS base URL for ``region`` (no trailing slash); ``override`` wins when given.

    A malformed region or override raises :class:`ConfigError` naming it.
    """
    if not isinstance(region, str) or not acs.REGION_RE.match(region):
        raise ConfigError(f"invalid KMS region {region!r}: expected an id such as cn-hangzhou")
    if override is not None and override.strip():
        base = override.strip()
        if not acs.BARE_ENDPOINT_RE.match(base):
            raise ConfigError(
                f"EDGESCALER_KMS_ENDPOINT: expected http(s)://host[:port], got {override[:60]!r}"
            )
        return base.rstrip("/")
    return f"https://kms.{region}.aliyuncs.com"


@dataclass(frozen=True)
class SecretValue:
    """One GetSecretValue answer. ``value`` is the ``SecretData`` (base64 text when
    ``data_type`` is ``binary``); everything else is metadata that is safe to log."""

    name: str
    value: Secret
    data_type: str
    version_id: str | None
    version_stages: tuple[str, ...]
    request_id: str | None


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class KMSClient:
    """Signed GetSecretValue calls to one regional KMS endpoint.

    ``credentials`` is called for every request (rotated STS credentials are picked up). Timeouts
    are short on purpose: the secret is fetched on the scale-out path, inside the function's own
    deadline. A throttled or 5xx answer, or a transport error, is retried ``max_retries`` times
    (GetSecretValue only reads) after ``retry_delay`` seconds. ``transport``, ``clock``,
    ``nonce`` and ``sleep`` are the seams for tests.
    """

    def __init__(
        self,
        region: str,
        credentials: Callable[[], Credentials],
        *,
        endpoint: str | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_retries: int = 1,
        retry_delay: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
        nonce: Callable[[], str] = new_nonce,
    ) -> None:
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        self.region = region
        self.base_url = endpoint_for(region, endpoint)
        self._credentials = acs.CredentialSource(credentials)
        self._max_retries = max_retries
        self._retry_delay = retry_delay
        self._sleep = sleep
        self._total_timeout = connect_timeout + read_timeout
        self._http = acs.client(
            self._credentials,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            transport=transport,
            clock=clock,
            nonce=nonce,
        )

    def __repr__(self) -> str:
        return f"KMSClient(region={self.region!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KMSClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def get_secret_value(self, name: str, *, version_stage: str | None = None) -> SecretValue:
        """The current value of secret ``name`` (a name or an ARN), or of ``version_stage``."""
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(f"invalid KMS secret name {str(name)[:80]!r}")
        query = encode_query({"SecretName": name, "VersionStage": version_stage})
        # The query is built here, not with params=: httpx would send spaces as "+" but the
        # signer canonicalises "%20" (reference/cs-api.md §3.6).
        url = f"{self.base_url}/?{query}"
        attempt = 0
        while True:
            try:
                return self._attempt(name, url, attempt)
            except KMSApiError as exc:
                if not exc.retryable or attempt >= self._max_retries:
                    raise
            except KMSTransportError:
                if attempt >= self._max_retries:
                    raise
            self._sleep(self._retry_delay)
            attempt += 1

    # -- plumbing

    def _message(self, text: str, limit: int = _MAX_ERROR_TEXT) -> str:
        """Outside text for an error: redacted (every known secret and the credentials) before
        it is cut to one short line."""
        return outside_message(text, limit, self._credentials.secrets())

    def _attempt(self, name: str, url: str, attempt: int) -> SecretValue:
        headers = {"x-acs-action": ACTION, "x-acs-version": API_VERSION}
        try:
            request = self._http.build_request("POST", url, headers=headers, content=b"")
            response, body = acs.exchange(
                self._http, request, max_bytes=_MAX_ANSWER, seconds=self._total_timeout
            )
        except (httpx.RequestError, httpx.InvalidURL, Abandoned) as exc:
            what = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport error"
            text = self._message(str(exc))
            log.debug(
                "kms %s attempt=%d status=error error=%s", ACTION, attempt, type(exc).__name__
            )
            raise KMSTransportError(
                secret_name=name,
                detail=f"{self.base_url}: {what}: {type(exc).__name__}"
                + (f": {text}" if text else ""),
            ) from None
        try:
            payload: Any = safejson.loads(body) if body else None
        except safejson.JSONError:
            payload = None
        request_id = (
            _opt_str(payload.get("RequestId")) if isinstance(payload, dict) else None
        ) or response.headers.get("x-acs-request-id")
        request_id = outside_message(request_id, 80) if request_id else None
        log.debug(
            "kms %s secret=%s attempt=%d status=%d request_id=%s",
            ACTION,
            name,
            attempt,
            response.status_code,
            request_id or "-",
        )
        if not 200 <= response.status_code < 300:
            raise self._api_error(name, response, body, payload, request_id)
        data = payload.get("SecretData") if isinstance(payload, dict) else None
        if not isinstance(data, str) or not data:
            raise KMSTransportError(
                secret_name=name,
                detail=f"HTTP {response.status_code} without SecretData"
                + (f" (request id {request_id})" if request_id else ""),
            )
        assert isinstance(payload, dict)
        stages = payload.get("VersionStages")
        stage_list = stages.get("VersionStage") if isinstance(stages, dict) else None
        return SecretValue(
            name=_opt_str(payload.get("SecretName")) or name,
            value=Secret(data),
            data_type=_opt_str(payload.get("SecretDataType")) or "text",
            version_id=_opt_str(payload.get("VersionId")),
            version_stages=tuple(s for s in (stage_list or []) if isinstance(s, str)),
            request_id=request_id,
        )

    def _api_error(
        self,
        name: str,
        response: httpx.Response,
        body: bytes,
        payload: Any,
        request_id: str | None,
    ) -> KMSApiError:
        status = response.status_code
        if isinstance(payload, dict):
            code = _opt_str(payload.get("Code")) or f"HTTP{status}"
            message = _opt_str(payload.get("Message")) or ""
        else:
            code = f"HTTP{status}"
            message = body.decode("utf-8", "replace")
        return KMSApiError(
            secret_name=name,
            status=status,
            code=self._message(code, 80),
            message=self._message(message) or response.reason_phrase,
            request_id=request_id,
        )


# How long a failed fetch of a secret is answered from memory (see SecretCache).
FAILURE_HOLD = 30.0


class SecretCache:
    """Secrets by name, each kept for ``ttl`` seconds after it was fetched.

    ``fetch(name)`` is called on a miss or an expired entry; its errors propagate, and for
    :data:`FAILURE_HOLD` seconds every :meth:`get` of that name raises the same error at once
    (policies sharing a secret on a KMS that hangs would otherwise each wait out its timeouts,
    one after the other, past the run's deadline); after that, :meth:`get` tries again.
    :meth:`invalidate` drops one entry: call it when ENS/CS rejects the password, then
    :meth:`get` once more to pick up a rotated value (and give up if that one is rejected too).
    ``clock`` is monotonic seconds, injectable for tests. Thread-safe: the pipeline evaluates
    policies concurrently; one fetch per name at a time, fetches of different names side by
    side.
    """

    def __init__(
        self,
        fetch: Callable[[str], Secret] | None = None,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl > 0:
            raise ConfigError(f"secret cache ttl must be > 0 seconds, got {ttl}")
        self._fetch = fetch
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, Secret]] = {}
        self._failed: dict[str, tuple[float, Exception]] = {}
        self._lock = threading.Lock()  # guards _entries, _failed and _fetching
        self._fetching: dict[str, threading.Lock] = {}

    def __repr__(self) -> str:
        return f"SecretCache(ttl={self._ttl}, names={sorted(self._entries)})"

    def get(self, name: str, fetch: Callable[[str], Secret] | None = None) -> Secret:
        """The cached value of ``name``, fetched with ``fetch`` (else the constructor's) when
        missing or expired. A cache that outlives one run takes each run's own fetch (its
        credentials), so it never holds a client or credentials itself."""
        fetch = fetch or self._fetch
        if fetch is None:
            raise TypeError("SecretCache.get needs a fetch")
        with self._lock:
            hit = self._known(name)
            if hit is not None:
                return hit
            name_lock = self._fetching.setdefault(name, threading.Lock())
        # One fetch per name at a time; policies naming other secrets do not wait for it.
        with name_lock:
            with self._lock:
                hit = self._known(name)  # fetched (or failed) in another thread meanwhile
            if hit is not None:
                return hit
            try:
                value = fetch(name)
            except Exception as exc:
                with self._lock:
                    self._failed[name] = (self._clock() + FAILURE_HOLD, exc)
                raise
            if not isinstance(value, Secret):  # a fetch that returns a str would leak in reprs
                raise TypeError("SecretCache fetch must return a Secret")
            with self._lock:
                self._entries[name] = (self._clock() + self._ttl, value)
                self._failed.pop(name, None)
            return value

    def _known(self, name: str) -> Secret | None:
        """The fresh value of ``name``, or None to fetch it; raises its failure while that is
        held (see the class docstring). Caller holds ``_lock``."""
        hit = self._fresh(name)
        if hit is not None:
            return hit
        failed = self._failed.get(name)
        if failed is not None and self._clock() < failed[0]:
            # The same error again, without the frames of every earlier raise of it.
            raise failed[1].with_traceback(None)
        return None

    def _fresh(self, name: str) -> Secret | None:
        entry = self._entries.get(name)
        return entry[1] if entry is not None and self._clock() < entry[0] else None

    def invalidate(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)
            self._failed.pop(name, None)


__all__ = [
    "ACTION",
    "API_VERSION",
    "KMSClient",
    "SecretCache",
    "SecretValue",
    "endpoint_for",
]
