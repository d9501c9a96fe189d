"""A fake Function Compute invoke API (FC 3.0 and FC 2.0) that checks signatures and runs handlers.

Routes (an app for tests/support/loopback.py):

    POST /2023-03-30/functions/{name}/invocations[?qualifier=Q]             FC 3.0, ACS3 signature
    POST /2016-08-15/services/{service}[.Q]/functions/{name}/invocations    FC 2.0, ``FC`` signature

The FC 3.0 signature is re-verified with tests/support/acs_verify.py. The FC 2.0 ``FC`` scheme is
re-implemented here from its documented definition (reference/fc.md §4.3), independently of the
``fc2`` SDK: ``Authorization: FC <AccessKeyId>:base64(hmac_sha256(secret, StringToSign))`` with

    StringToSign = METHOD \\n Content-MD5 \\n Content-Type \\n Date \\n
                   CanonicalizedFCHeaders (each x-fc-* header, lower-cased, sorted, "k:v\\n")
                   + the unescaped path

Like FC, a sync invocation answers 200 with the handler's return value (JSON for a dict); a
handler that raises answers 200 with ``X-Fc-Error-Type: UnhandledInvocationError`` and
``{"errorMessage", "errorType", "stackTrace"}``; an async one answers 202 (here the handler runs
before the answer, ``async_deliveries`` times: FC delivers async events at least once). Errors
use each API's shape: FC 3.0 ``{"Code", "Message", "RequestId"}``, FC 2.0 ``{"ErrorCode",
"ErrorMessage"}`` plus ``X-Fc-Request-Id``.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from tests.support import acs_verify

Handler = Callable[[bytes, Any], Any]


@dataclass
class FCCredentials:  # the shape of FC's context.credentials (python3.9/3.10 runtimes)
    access_key_id: str
    access_key_secret: str
    security_token: str


@dataclass
class FCFunctionMeta:
    name: str
    handler: str = "index.handler"
    memory: int = 512
    timeout: int = 120


@dataclass
class FCContext:
    """What the runtime hands the handler (reference/fc.md §1.2), enough for edgescaler."""

    request_id: str
    credentials: FCCredentials | None
    function: FCFunctionMeta
    region: str
    account_id: str


@dataclass
class Invocation:
    api: str  # "fc3" | "fc2"
    target: str
    headers: dict[str, str]
    body: bytes
    problems: list[str]
    status: int
    request_id: str
    invocation_type: str


def fc_string_to_sign(method: str, path: str, headers: Mapping[str, str]) -> str:
    """The FC 2.0 ``FC`` scheme's string to sign; ``headers`` lower-cased, ``path`` unescaped."""
    fc_headers = sorted((k, v) for k, v in headers.items() if k.startswith("x-fc-"))
    canonical = "".join(f"{k}:{v}\n" for k, v in fc_headers)
    return "\n".join(
        [
            method.upper(),
            headers.get("content-md5", ""),
            headers.get("content-type", ""),
            headers.get("date", ""),
            canonical + path,
        ]
    )


def fc_signature_problems(
    method: str,
    path: str,
    headers: Mapping[str, str],
    keys: Mapping[str, str],
    now: datetime,
) -> list[str]:
    auth = headers.get("authorization", "")
    if not auth.startswith("FC ") or ":" not in auth:
        return ["missing or malformed Authorization (expected 'FC <id>:<signature>')"]
    key_id, _, given = auth[3:].partition(":")
    secret = keys.get(key_id)
    if secret is None:
        return [f"unknown access key id {key_id}"]
    found = []
    date = headers.get("date", "")
    try:
        sent = email.utils.parsedate_to_datetime(date)
        if abs((now - sent).total_seconds()) > 900:
            found.append("Date more than 15 minutes off")
    except (TypeError, ValueError):
        found.append(f"bad Date {date!r}")
    expected = base64.b64encode(
        hmac.new(
            secret.encode(), fc_string_to_sign(method, path, headers).encode(), hashlib.sha256
        ).digest()
    ).decode()
    if not hmac.compare_digest(expected, given):
        found.append("signature mismatch")
    return found


@dataclass
class FakeFC:
    """Functions by name (FC 2.0: ``"service/function"``); ``keys`` are the callers' access keys
    (id -> secret); ``role`` the function's STS credentials handed to it in ``context``."""

    keys: Mapping[str, str]
    functions: dict[str, Handler]
    security_token: str | None = None  # the caller's token, required when set
    role: FCCredentials | None = None
    region: str = "cn-hangzhou"
    account_id: str = "1234567890123456"
    async_deliveries: int = 1
    invocations: list[Invocation] = field(default_factory=list)
    async_results: list[Any] = field(default_factory=list)
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _n: int = 0

    def __call__(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self._n += 1
            rid = f"1-fake-{self._n:08d}"
        hdrs = acs_verify.lowered(headers)
        path, _, raw_query = target.partition("?")
        parts = path.split("/")
        if (
            path.startswith("/2023-03-30/functions/")
            and len(parts) == 5
            and parts[4] == "invocations"
        ):
            return self._fc3(method, target, hdrs, headers, body, unquote(parts[3]), raw_query, rid)
        if (
            path.startswith("/2016-08-15/services/")
            and len(parts) == 7
            and parts[4] == "functions"
            and parts[6] == "invocations"
        ):
            service = unquote(parts[3]).partition(".")[0]
            return self._fc2(method, target, hdrs, body, f"{service}/{unquote(parts[5])}", rid)
        return (
            404,
            {"content-type": "application/json"},
            json.dumps(
                {"Code": "NotFound", "Message": f"no route {method} {path}", "RequestId": rid}
            ).encode(),
        )

    # -- the two APIs

    def _fc3(
        self,
        method: str,
        target: str,
        hdrs: dict[str, str],
        raw_headers: list[tuple[str, str]],
        body: bytes,
        name: str,
        raw_query: str,
        rid: str,
    ) -> tuple[int, dict[str, str], bytes]:
        problems = acs_verify.problems(method, target, raw_headers, body, self.keys)
        if hdrs.get("x-acs-action") != "InvokeFunction":
            problems.append(f"x-acs-action {hdrs.get('x-acs-action')!r}")
        if hdrs.get("x-acs-version") != "2023-03-30":
            problems.append(f"x-acs-version {hdrs.get('x-acs-version')!r}")
        problems += self._token_problems(hdrs.get("x-acs-security-token"))

        def error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
            out = {"Code": code, "Message": message, "RequestId": rid}
            return (
                status,
                {"content-type": "application/json", "x-fc-request-id": rid},
                json.dumps(out).encode(),
            )

        return self._run("fc3", target, hdrs, body, name, rid, problems, error)

    def _fc2(
        self, method: str, target: str, hdrs: dict[str, str], body: bytes, name: str, rid: str
    ) -> tuple[int, dict[str, str], bytes]:
        path = unquote(target.partition("?")[0])
        problems = fc_signature_problems(method, path, hdrs, self.keys, self.clock())
        problems += self._token_problems(hdrs.get("x-fc-security-token"))

        def error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
            out = {"ErrorCode": code, "ErrorMessage": message}
            return (
                status,
                {"content-type": "application/json", "x-fc-request-id": rid},
                json.dumps(out).encode(),
            )

        return self._run("fc2", target, hdrs, body, name, rid, problems, error)

    def _token_problems(self, given: str | None) -> list[str]:
        if self.security_token is not None and given != self.security_token:
            return ["missing or wrong security token"]
        return []

    def _run(
        self,
        api: str,
        target: str,
        hdrs: dict[str, str],
        body: bytes,
        name: str,
        rid: str,
        problems: list[str],
        error: Callable[[int, str, str], tuple[int, dict[str, str], bytes]],
    ) -> tuple[int, dict[str, str], bytes]:
        kind = hdrs.get("x-fc-invocation-type", "Sync")

        def record(status: int) -> None:
            with self._lock:
                self.invocations.append(
                    Invocation(api, target, hdrs, body, problems, status, rid, kind)
                )

        if problems:
            record(403)
            code = "SignatureNotMatch" if api == "fc2" else "SignatureDoesNotMatch"
            return error(403, code, "; ".join(problems))
        handler = self.functions.get(name)
        if handler is None:
            record(404)
            return error(404, "FunctionNotFound", f"function '{name}' does not exist")
        if kind not in ("Sync", "Async"):
            record(400)
            return error(400, "InvalidArgument", f"x-fc-invocation-type {kind!r}")
        context = FCContext(
            rid, self.role, FCFunctionMeta(name.rpartition("/")[2]), self.region, self.account_id
        )
        if kind == "Async":
            record(202)
            for _ in range(self.async_deliveries):
                self.async_results.append(self._call(handler, body, context)[1])
            return 202, {"x-fc-request-id": rid}, b""
        record(200)
        failed, result = self._call(handler, body, context)
        headers = {"x-fc-request-id": rid, "content-type": "application/json"}
        if failed:
            headers["x-fc-error-type"] = "UnhandledInvocationError"
            return 200, headers, json.dumps(result).encode()
        if isinstance(result, bytes | str):
            return 200, headers, result.encode() if isinstance(result, str) else result
        return 200, headers, json.dumps(result).encode()

    @staticmethod
    def _call(handler: Handler, body: bytes, context: FCContext) -> tuple[bool, Any]:
        try:
            return False, handler(body, context)
        except Exception as exc:
            return True, {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:],
            }
