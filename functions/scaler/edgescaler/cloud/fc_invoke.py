"""Invoking the deployed function from a workstation: FC 3.0 ``InvokeFunction`` or FC 2.0 ``fc2``.

    FC 3.0  POST {endpoint}/2023-03-30/functions/{function}/invocations[?qualifier=Q]
            ACS3-HMAC-SHA256 (our signer), x-acs-action InvokeFunction, x-acs-version 2023-03-30,
            body = the event bytes as application/octet-stream (what the official SDK sends)
    FC 2.0  POST {endpoint}/2016-08-15/services/{service}[.Q]/functions/{function}/invocations
            through ``aliyun-fc2`` (module ``fc2``, its own ``FC`` signature), imported lazily

Both take ``x-fc-invocation-type: Sync | Async`` and ``x-fc-log-type: None``. Endpoint (FC 3.0 and
2.0 alike, "Endpoints" pages of both docs; also what Serverless Devs' fc3 component uses for
invocations): ``https://{account_id}.{region}.fc.aliyuncs.com``. The generic ``fc.{region}``
host of the FC 3.0 SDK's endpoint rule is not used; an override (``EDGESCALER_FC_ENDPOINT``)
replaces the whole base URL.

A sync invocation answers 200 with the function's return value; when the function raised, FC
still answers 200 but sets ``X-Fc-Error-Type`` (``UnhandledInvocationError``...) and the body is
``{"errorMessage", "errorType", "stackTrace"}``: that is :class:`~edgescaler.errors.FunctionError`.
An async invocation answers 202 and only the request id is known. Anything else is
:class:`~edgescaler.errors.InvokeError` with FC's code, the HTTP status and the request id.

``fc2`` needs two guards (reference/fc.md §4.4): its transport retries 5 times with backoff on a
refused connection (≈30 s), and on every error it writes the request headers, security token and
Authorization included, to the *root* logger (and the string to sign, token included, at DEBUG).
:class:`FC2Invoker` turns the retries off for its call and drops every record ``fc2`` logs.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx

from edgescaler import safejson
from edgescaler.cloud import acs
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.signing import encode_query, new_nonce, percent_encode
from edgescaler.errors import ConfigError, FunctionError, InvokeError
from edgescaler.outside import message as outside_message

FC3_API_VERSION = "2023-03-30"
FC2_API_VERSION = "2016-08-15"

log = logging.getLogger("edgescaler.invoke")

_ACCOUNT_RE = re.compile(r"^[0-9]{5,20}$")
_MAX_TEXT = 300


def endpoint_for(region: str | None, account_id: str | None, override: str | None = None) -> str:
    """``https://{account_id}.{region}.fc.aliyuncs.com``, or ``override`` (no trailing slash)."""
    if override:
        base = override.strip()
        if not acs.BARE_ENDPOINT_RE.match(base):
            raise ConfigError(
                f"EDGESCALER_FC_ENDPOINT: expected http(s)://host[:port], got {override[:60]!r}"
            )
        return base.rstrip("/")
    if not region or not acs.REGION_RE.match(region):
        raise ConfigError(
            f"EDGESCALER_FC_REGION: expected a region id such as cn-hangzhou, got {region!r}"
        )
    if not account_id or not _ACCOUNT_RE.match(account_id):
        raise ConfigError(
            "EDGESCALER_FC_ACCOUNT_ID: expected the numeric Alibaba Cloud account id "
            f"(the FC endpoint is <account>.<region>.fc.aliyuncs.com), got {account_id!r}"
        )
    return f"https://{account_id}.{region}.fc.aliyuncs.com"


@dataclass(frozen=True)
class Invocation:
    """What FC answered: its request id, the status, and (sync only) the function's result."""

    request_id: str | None
    status: int
    body: bytes
    asynchronous: bool


class Invoker(Protocol):
    def invoke(self, payload: bytes, *, asynchronous: bool) -> Invocation: ...

    def close(self) -> None: ...


def _one_line(text: str, *secrets: Any, limit: int = _MAX_TEXT) -> str:
    return outside_message(text, limit, secrets)


def _quoted_id(value: object) -> str | None:
    """A request id from the answer (header or body): outside text, quoted short."""
    return outside_message(str(value), 80) if value else None


def function_error(
    function: str,
    error_type: str,
    body: bytes,
    request_id: str | None,
    secrets: tuple[Any, ...] = (),
) -> FunctionError:
    """The one-line error for a sync answer that carries ``X-Fc-Error-Type`` (``error_type``);
    ``body`` is the function's error, ``{"errorMessage", "errorType", "stackTrace"}``."""
    detail = detail_type = ""
    data = _json_object(body)
    if data is not None:
        detail = str(data.get("errorMessage") or data.get("ErrorMessage") or "")
        detail_type = str(data.get("errorType") or data.get("ErrorType") or "")
    elif body:
        detail = body.decode("utf-8", "replace")
    parts = [f"function {function} failed: {_one_line(error_type, *secrets, limit=80)}"]
    if detail_type and detail_type != error_type:
        parts.append(_one_line(detail_type, *secrets, limit=80))
    if detail:
        parts.append(_one_line(detail, *secrets))
    return FunctionError(": ".join(parts), error_type=error_type, request_id=_quoted_id(request_id))


def _json_object(body: bytes | str) -> dict[str, Any] | None:
    """The JSON object an FC answer carries, or None (malformed, hostile or not an object)."""
    try:
        data = safejson.loads(body)
    except safejson.JSONError:
        return None
    return data if isinstance(data, dict) else None


def _api_error(
    action: str,
    function: str,
    status: int,
    body: bytes,
    request_id: str | None,
    secrets: tuple[Any, ...] = (),
) -> InvokeError:
    data = _json_object(body)
    if data is not None:
        code = _one_line(
            str(data.get("Code") or data.get("ErrorCode") or f"HTTP{status}"), *secrets, limit=80
        )
        message = str(data.get("Message") or data.get("ErrorMessage") or "")
        request_id = request_id or data.get("RequestId")
    else:
        code = f"HTTP{status}"
        message = body.decode("utf-8", "replace")
    return InvokeError(
        f"{action} {function}: HTTP {status} {code}"
        + (f": {_one_line(message, *secrets)}" if message else ""),
        code=code,
        status=status,
        request_id=_quoted_id(request_id),
    )


# --------------------------------------------------------------------------- FC 3.0


class FC3Invoker:
    """``InvokeFunction`` (FC 3.0, API 2023-03-30) over httpx, signed with our ACS3 signer.

    ``read_timeout`` must outlast the function's own timeout for a sync call. Never retried: an
    invocation that timed out may still be running (its event's ``request_id`` deduplicates a
    deliberate re-run). ``transport``, ``clock`` and ``nonce`` are the seams for tests.
    """

    def __init__(
        self,
        function: str,
        credentials: Callable[[], Credentials],
        *,
        endpoint: str,
        qualifier: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 130.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
        nonce: Callable[[], str] = new_nonce,
    ) -> None:
        self.function = function
        self.base_url = endpoint.rstrip("/")
        self.qualifier = qualifier
        self._credentials = acs.CredentialSource(credentials)
        self._answer_seconds = connect_timeout + read_timeout
        self._http = acs.client(
            self._credentials,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            transport=transport,
            clock=clock,
            nonce=nonce,
        )

    def close(self) -> None:
        self._http.close()

    def invoke(self, payload: bytes, *, asynchronous: bool) -> Invocation:
        path = f"/{FC3_API_VERSION}/functions/{percent_encode(self.function)}/invocations"
        qs = encode_query({"qualifier": self.qualifier})
        url = f"{self.base_url}{path}" + (f"?{qs}" if qs else "")
        headers = {
            "x-acs-action": "InvokeFunction",
            "x-acs-version": FC3_API_VERSION,
            "x-fc-invocation-type": "Async" if asynchronous else "Sync",
            "x-fc-log-type": "None",
            "content-type": "application/octet-stream",
        }
        try:
            request = self._http.build_request("POST", url, headers=headers, content=payload)
            response, content = acs.exchange(
                self._http, request, max_bytes=acs.MAX_ANSWER_BYTES, seconds=self._answer_seconds
            )
        except (httpx.RequestError, httpx.InvalidURL, acs.Abandoned) as exc:
            raise _transport_error(
                "InvokeFunction", self.function, self.base_url, exc, self._credentials.secrets()
            ) from None
        raw_id = response.headers.get("x-fc-request-id")  # quoted once, by whoever shows it
        request_id = _quoted_id(raw_id)
        log.debug(
            "fc3 InvokeFunction %s status=%d request_id=%s",
            self.function,
            response.status_code,
            request_id or "-",
        )
        error_type = response.headers.get("x-fc-error-type")
        secrets = self._credentials.secrets()
        if error_type:
            raise function_error(self.function, error_type, content, raw_id, secrets)
        if not 200 <= response.status_code < 300:
            raise _api_error(
                "InvokeFunction", self.function, response.status_code, content, raw_id, secrets
            )
        return Invocation(request_id, response.status_code, content, asynchronous)


def _transport_error(
    action: str, function: str, endpoint: str, exc: Exception, secrets: tuple[Any, ...]
) -> InvokeError:
    name = type(exc).__name__
    if "Timeout" in name:
        hint = " (the invocation may have reached FC and may still be running: check its logs)"
        code = "timeout"
    else:
        hint = ""
        code = "connection"
    detail = _one_line(str(exc), *secrets)
    return InvokeError(
        f"{action} {function}: {endpoint}: {name}" + (f": {detail}" if detail else "") + hint,
        code=code,
    )


# --------------------------------------------------------------------------- FC 2.0


class _DropFc2Records(logging.Filter):
    """Drops every record the ``fc2`` package logs (it logs straight to the root logger)."""

    def __init__(self, package_dir: str) -> None:
        super().__init__()
        self._dir = package_dir

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.pathname.startswith(self._dir)


@contextmanager
def fc2_guard(fc2_client: Any) -> Iterator[None]:
    """While inside: ``fc2`` does not retry (a refused connection fails at once instead of after
    ≈30 s of backoff) and none of its log records — which carry the security token and the
    Authorization header — reaches a handler. Both are restored on exit."""
    saved = (fc2_client.retries, fc2_client.backoff_factor)
    package_dir = os.path.dirname(os.path.abspath(fc2_client.__file__ or "")) + os.sep
    dropper = _DropFc2Records(package_dir)
    root = logging.getLogger()
    fc2_client.retries, fc2_client.backoff_factor = 0, 0
    root.addFilter(dropper)
    try:
        yield
    finally:
        root.removeFilter(dropper)
        fc2_client.retries, fc2_client.backoff_factor = saved


class FC2Invoker:
    """``invoke_function`` of an FC 2.0 function through ``aliyun-fc2`` (imported here, lazily)."""

    def __init__(
        self,
        service: str,
        function: str,
        credentials: Credentials,
        *,
        endpoint: str,
        qualifier: str | None = None,
        timeout: float = 130.0,
    ) -> None:
        import fc2
        import fc2.client

        self.service = service
        self.function = function
        self.qualifier = qualifier
        self.base_url = endpoint.rstrip("/")
        self._fc2 = fc2
        self._credentials = credentials
        self._client = fc2.Client(
            endpoint=self.base_url,
            accessKeyID=credentials.access_key_id,
            accessKeySecret=credentials.access_key_secret.reveal(),
            securityToken=credentials.security_token.reveal() if credentials.security_token else "",
            Timeout=timeout,
        )

    def close(self) -> None:  # fc2 opens a new requests.Session per call
        pass

    def invoke(self, payload: bytes, *, asynchronous: bool) -> Invocation:
        import requests

        fc2 = self._fc2
        secrets = (self._credentials.access_key_secret, self._credentials.security_token)
        headers = {
            "x-fc-invocation-type": "Async" if asynchronous else "Sync",
            "x-fc-log-type": "None",
        }
        name = f"{self.service}/{self.function}"
        try:
            with fc2_guard(fc2.client):
                response = self._client.invoke_function(
                    self.service,
                    self.function,
                    payload=payload,
                    headers=headers,
                    qualifier=self.qualifier,
                )
        except fc2.FcError as exc:
            raise self._fc_error(exc, name, secrets) from None
        except requests.exceptions.RequestException as exc:
            raise _transport_error("InvokeFunction", name, self.base_url, exc, secrets) from None
        except ValueError as exc:  # fc2 calls r.json() on an error body that is not JSON
            raise InvokeError(
                f"InvokeFunction {name}: FC answered an error without a JSON body: "
                f"{_one_line(str(exc), *secrets)}",
                code="bad_response",
            ) from None
        request_id = _quoted_id(response.headers.get("x-fc-request-id"))
        data = response.data
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        return Invocation(request_id, 202 if asynchronous else 200, body, asynchronous)

    @staticmethod
    def _fc_error(exc: Any, name: str, secrets: tuple[Any, ...]) -> InvokeError:
        request_id = str(exc.request_id) if getattr(exc, "request_id", "") else None
        if request_id == "unknown":
            request_id = None
        raw = str(getattr(exc, "message", "") or "")
        status = int(getattr(exc, "status_code", 0) or 0)
        # FC's function error: 200 + X-Fc-Error-Type; fc2 raises it as FcError(status 200) with
        # the function's error body as the message.
        # fc2 keeps the body but drops the X-Fc-Error-Type header: the type is not known here.
        if status == 200 and _json_object(raw) is not None:
            return function_error(name, "FunctionError", raw.encode(), request_id, secrets)
        return _api_error("InvokeFunction", name, status, raw.encode(), request_id, secrets)


__all__ = [
    "FC2_API_VERSION",
    "FC3_API_VERSION",
    "FC2Invoker",
    "FC3Invoker",
    "Invocation",
    "Invoker",
    "endpoint_for",
    "fc2_guard",
    "function_error",
]
