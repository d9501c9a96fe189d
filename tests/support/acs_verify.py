"""Re-verify an ACS3-HMAC-SHA256 request as a server would, from what was received.

Used by the signing, client and oracle tests. It recomputes the signature with the pure functions
of ``edgescaler.cloud.signing`` from the received method, raw target (path + query), headers and
body bytes, so a client that sends something other than what it signed is caught.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping

import httpx

from edgescaler.cloud import signing

AUTH_RE = re.compile(
    r"^ACS3-HMAC-SHA256 Credential=(?P<ak>[^,\s]+),SignedHeaders=(?P<names>[^,\s]+),"
    r"Signature=(?P<sig>[0-9a-f]{64})$"
)
REQUIRED = (
    "host",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
)


def lowered(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for key, value in items:
        k = key.lower()
        out[k] = f"{out[k]},{value}" if k in out else value
    return out


def problems(
    method: str,
    target: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    secrets_by_ak: Mapping[str, str],
) -> list[str]:
    """Everything wrong with the request's signature; ``[]`` when a server would accept it."""
    hdrs = lowered(headers)
    match = AUTH_RE.match(hdrs.get("authorization", ""))
    if not match:
        return ["missing or malformed Authorization"]
    found: list[str] = []
    secret = secrets_by_ak.get(match["ak"])
    if secret is None:
        return [f"unknown access key id {match['ak']}"]
    body_hash = hashlib.sha256(body).hexdigest()
    if hdrs.get("x-acs-content-sha256") != body_hash:
        found.append("x-acs-content-sha256 does not match the body received")
    names = match["names"].split(";")
    if names != sorted(names):
        found.append("SignedHeaders not sorted")
    must = list(REQUIRED)
    if "x-acs-security-token" in hdrs:
        must.append("x-acs-security-token")
    found += [f"{n} not signed" for n in must if n not in names]
    found += [f"signed header {n} absent" for n in names if n not in hdrs]
    path, _, raw_query = target.partition("?")
    canonical = signing.canonical_request(
        method,
        path,
        signing.canonical_query_from_raw(raw_query),
        hdrs,
        names,
        body_hash,
    )
    expected = signing.signature(secret, canonical)
    if not hmac.compare_digest(expected, match["sig"]):
        found.append("signature mismatch")
    return found


def request_problems(request: httpx.Request, secrets_by_ak: Mapping[str, str]) -> list[str]:
    """:func:`problems` for an ``httpx.Request`` as a MockTransport app receives it."""
    return problems(
        request.method,
        request.url.raw_path.decode("ascii"),
        request.headers.multi_items(),
        request.read(),
        secrets_by_ak,
    )
