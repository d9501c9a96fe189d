"""ACS3-HMAC-SHA256 request signing (Alibaba Cloud OpenAPI signature V3).

The crypto is a handful of pure functions so that golden vectors (reference/cs-api.md §3.8), the
official SDK cross-check and the emulator's verifier all exercise exactly the same code;
:class:`AcsV3Auth` is the thin ``httpx.Auth`` that applies them to an outgoing request.

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n
                       SignedHeaders \\n HexPayloadHash
    StringToSign     = "ACS3-HMAC-SHA256" \\n hex(sha256(CanonicalRequest))
    Signature        = hex(hmac_sha256(secret, StringToSign))

The client must send exactly the path and query it signed: use :func:`encode_query` to build the
query string (RFC 3986, space as ``%20``) rather than letting httpx encode ``params``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import datetime, timezone
from urllib.parse import quote, unquote

import httpx

from edgescaler.cloud.credentials import Credentials

ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# Like the official SDK we sign every header present at signing time, except the ones the HTTP
# transport owns and may add or rewrite after signing (and Authorization itself).
_UNSIGNED = frozenset(
    {"authorization", "content-length", "connection", "accept-encoding", "transfer-encoding"}
)


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as the SDK does it: everything but unreserved chars, ``~`` kept."""
    return quote(value, safe="~")


def encode_query(params: Mapping[str, str | int | None]) -> str:
    """Canonical query string: keys sorted, ``None`` values dropped, values RFC 3986 encoded.

    Used both to build the URL that is sent and, on the receiving side, to canonicalise it.
    """
    items = sorted((k, str(v)) for k, v in params.items() if v is not None)
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in items)


def parse_query(raw: str) -> list[tuple[str, str]]:
    """Decode a raw query string into pairs (``+`` is kept as a literal plus, per RFC 3986)."""
    pairs: list[tuple[str, str]] = []
    for part in raw.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def canonical_query_from_raw(raw: str) -> str:
    """Canonical query of a received request: decode, sort, re-encode."""
    pairs = sorted(parse_query(raw))
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in pairs)


def signed_header_names(headers: Iterable[str]) -> list[str]:
    """Lower-cased, sorted names of the headers that must be signed."""
    return sorted({h.lower() for h in headers} - _UNSIGNED)


def canonical_headers(headers: Mapping[str, str], names: Iterable[str]) -> str:
    """``name:value\\n`` for each signed header (values stripped), in the order of ``names``."""
    lowered: dict[str, list[str]] = {}
    for key, value in headers.items():
        lowered.setdefault(key.lower(), []).append(value.strip())
    lines = []
    for name in names:
        values = lowered.get(name, [])
        lines.append(f"{name}:{','.join(sorted(values))}\n")
    return "".join(lines)


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_names: list[str],
    payload_hash: str,
) -> str:
    """The V3 canonical request. ``path`` is the already-encoded path; ``query`` canonical."""
    return "\n".join(
        [
            method.upper(),
            path or "/",
            query,
            canonical_headers(headers, signed_names),
            ";".join(signed_names),
            payload_hash,
        ]
    )


def string_to_sign(canonical: str) -> str:
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"


def signature(secret: str, canonical: str) -> str:
    """Lower-case hex HMAC-SHA256 of the string to sign, keyed with the access key secret."""
    return hmac.new(
        secret.encode("utf-8"), string_to_sign(canonical).encode("utf-8"), hashlib.sha256
    ).hexdigest()


def authorization(access_key_id: str, signed_names: list[str], sig: str) -> str:
    """The ``Authorization`` value; note: no spaces after the commas."""
    names = ";".join(signed_names)
    return f"{ALGORITHM} Credential={access_key_id},SignedHeaders={names},Signature={sig}"


def sign_headers(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
) -> dict[str, str]:
    """Return the headers to add: content hash, STS headers and ``Authorization``.

    ``headers`` must already hold ``host``, ``x-acs-action``, ``x-acs-version``, ``x-acs-date``
    and ``x-acs-signature-nonce`` (see :func:`acs_headers`).
    """
    added: dict[str, str] = {"x-acs-content-sha256": hashlib.sha256(body).hexdigest()}
    if credentials.is_sts:
        assert credentials.security_token is not None
        added["x-acs-security-token"] = credentials.security_token.reveal()
        added["x-acs-accesskey-id"] = credentials.access_key_id
    all_headers = {**{k.lower(): v for k, v in headers.items()}, **added}
    names = signed_header_names(all_headers)
    canonical = canonical_request(
        method, path, query, all_headers, names, added["x-acs-content-sha256"]
    )
    sig = signature(credentials.access_key_secret.reveal(), canonical)
    added["authorization"] = authorization(credentials.access_key_id, names, sig)
    return added


def utc_timestamp(now: datetime) -> str:
    """``x-acs-date``: UTC, second precision, ``Z`` suffix."""
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_nonce() -> str:
    """A fresh 32-hex-char nonce; never reused, not even for a retry."""
    return secrets.token_hex(16)


def acs_headers(*, action: str, version: str, now: datetime, nonce: str) -> dict[str, str]:
    """The per-request ``x-acs-*`` headers that precede signing."""
    return {
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": utc_timestamp(now),
        "x-acs-signature-nonce": nonce,
    }


class AcsV3Auth(httpx.Auth):
    """Signs each outgoing request with ACS3-HMAC-SHA256.

    The request must already carry ``x-acs-action`` and ``x-acs-version``; date and nonce are
    added here (fresh on every attempt). ``credentials`` is a callable so that rotated STS
    credentials are picked up without rebuilding the client. ``nonce`` must return a new value on
    every call; it is injectable only so that a test can reproduce a captured request.
    """

    requires_request_body = True

    def __init__(
        self,
        credentials: Callable[[], Credentials],
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        nonce: Callable[[], str] = new_nonce,
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._nonce = nonce

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-acs-date"] = utc_timestamp(self._clock())
        request.headers["x-acs-signature-nonce"] = self._nonce()
        raw_path, _, raw_query = request.url.raw_path.decode("ascii").partition("?")
        added = sign_headers(
            method=request.method,
            path=raw_path,
            query=canonical_query_from_raw(raw_query),
            headers=dict(request.headers),
            body=request.content,
            credentials=self._credentials(),
        )
        for key, value in added.items():
            request.headers[key] = value
        yield request
