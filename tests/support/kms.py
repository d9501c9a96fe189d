"""A fake KMS Secrets Manager endpoint: GetSecretValue only, behind a real ACS3 check.

It answers like KMS's RPC API (reference/alibaba-today.md §5): ``POST /?SecretName=...`` with
``x-acs-action: GetSecretValue`` and ``x-acs-version: 2016-01-20``, a JSON body with
``RequestId``, ``SecretName``, ``SecretData``, ``SecretDataType``, ``VersionId`` and
``VersionStages``; errors as ``{"RequestId", "HostId", "Code", "Message"}`` with the HTTP status.
Every request's signature is re-verified with tests/support/acs_verify.py; a request that fails
is answered ``400 SignatureDoesNotMatch`` and recorded with its problems.

Use it as an app (tests/support/loopback.py): ``transport(fake)`` or ``with serve(fake) as url``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from tests.support import acs_verify


@dataclass
class Call:
    target: str
    headers: dict[str, str]
    secret_name: str | None
    problems: list[str]
    status: int


@dataclass
class FakeKMS:
    keys: Mapping[str, str]  # access key id -> secret
    secrets: dict[str, str] = field(default_factory=dict)
    security_token: str | None = None  # required on every request when set
    region: str = "cn-hangzhou"
    # (status, code) answers to give before serving normally, one per request.
    faults: list[tuple[int, str]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    _versions: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, name: str, value: str) -> None:
        """Create or rotate a secret (a new version becomes ACSCurrent)."""
        with self._lock:
            self.secrets[name] = value
            self._versions[name] = self._versions.get(name, 0) + 1

    def fetches(self, name: str) -> int:
        return sum(1 for c in self.calls if c.secret_name == name and c.status == 200)

    def __call__(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            n = len(self.calls) + 1
            rid = f"kms-fake-{n:06d}"
            hdrs = acs_verify.lowered(headers)
            path, _, raw_query = target.partition("?")
            query = {
                unquote(k): unquote(v)
                for k, _, v in (p.partition("=") for p in raw_query.split("&") if p)
            }
            name = query.get("SecretName")
            problems = acs_verify.problems(method, target, headers, body, self.keys)
            if (
                self.security_token is not None
                and hdrs.get("x-acs-security-token") != self.security_token
            ):
                problems.append("missing or wrong x-acs-security-token")
            if method != "POST" or path != "/":
                problems.append(f"unexpected {method} {path}")
            if hdrs.get("x-acs-action") != "GetSecretValue":
                problems.append(f"x-acs-action {hdrs.get('x-acs-action')!r}")
            if hdrs.get("x-acs-version") != "2016-01-20":
                problems.append(f"x-acs-version {hdrs.get('x-acs-version')!r}")
            if problems:
                status, answer = 400, self._error(rid, "SignatureDoesNotMatch", "; ".join(problems))
            elif self.faults:
                status, code = self.faults.pop(0)
                answer = self._error(rid, code, f"injected {code}")
            elif not name or name not in self.secrets:
                status, answer = (
                    404,
                    self._error(rid, "Forbidden.ResourceNotFound", "The resource not found."),
                )
            else:
                status = 200
                answer = {
                    "RequestId": rid,
                    "SecretName": name,
                    "SecretData": self.secrets[name],
                    "SecretDataType": "text",
                    "SecretType": "Generic",
                    "VersionId": f"v{self._versions.get(name, 1)}",
                    "VersionStages": {"VersionStage": ["ACSCurrent"]},
                    "CreateTime": "2026-11-30T08:00:00Z",
                }
            self.calls.append(Call(target, hdrs, name, problems, status))
        return status, {"content-type": "application/json"}, json.dumps(answer).encode()

    def _error(self, rid: str, code: str, message: str) -> dict[str, str]:
        return {
            "RequestId": rid,
            "HostId": f"kms.{self.region}.aliyuncs.com",
            "Code": code,
            "Message": message,
        }
