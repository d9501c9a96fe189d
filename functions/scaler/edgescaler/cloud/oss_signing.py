"""OSS request signing, signature version 4 (``OSS4-HMAC-SHA256``).

OSS's own scheme, not the OpenAPI ACS3 one (:mod:`edgescaler.cloud.signing`) nor AWS SigV4.
Pure functions, so that the official SDK cross-check (``tests/unit/test_oss_signing_oracle.py``)
and the client exercise exactly the same code; :class:`OssV4Auth` applies them to an httpx
request::

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n
                       AdditionalHeaders \\n "UNSIGNED-PAYLOAD"
    StringToSign     = "OSS4-HMAC-SHA256" \\n <x-oss-date> \\n <scope> \\n
                       hex(sha256(CanonicalRequest))
    scope            = <yyyymmdd>/<region>/oss/aliyun_v4_request
    SigningKey       = HMAC chain over "aliyun_v4" + secret:
                       date, region, "oss", "aliyun_v4_request"
    Authorization    = OSS4-HMAC-SHA256 Credential=<key id>/<scope>[,AdditionalHeaders=a;b],
                       Signature=<hex>

* The canonical URI is always ``/<bucket>/<key>`` (``/<bucket>/`` for a bucket operation), percent
  encoded except ``/``, whether the request went virtual-hosted or path-style.
* The canonical query is the query string *as sent* (already encoded), its pairs sorted; a
  parameter without a value (``?versioning``) appears as its bare name. Hence the client builds
  the query itself with :func:`encode_query` and sends exactly that.
* Signed headers: every ``x-oss-*`` header, ``content-type`` and ``content-md5``, plus the
  optional "additional" ones named in the Authorization header (none by default).
* The payload is not hashed (``x-oss-content-sha256: UNSIGNED-PAYLOAD``, as the SDKs do).
* An STS token travels as ``x-oss-security-token`` and is therefore signed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import datetime, timezone
from email.utils import format_datetime
from urllib.parse import quote

import httpx

from edgescaler.cloud.credentials import Credentials

ALGORITHM = "OSS4-HMAC-SHA256"
PRODUCT = "oss"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_TERMINATOR = "aliyun_v4_request"
_ALWAYS_SIGNED = frozenset({"content-type", "content-md5"})


def uri_encode(value: str, *, keep_slash: bool) -> str:
    """RFC 3986 percent-encoding: everything but ``A-Za-z0-9-._~`` (and ``/`` if kept)."""
    return quote(value, safe="/~" if keep_slash else "~")


def encode_query(params: Mapping[str, str | int | None]) -> str:
    """The query string to send (and sign): keys sorted, ``None`` values dropped, names and
    values strictly encoded (``/`` too); an empty value gives the bare name."""
    parts = []
    for key, value in sorted((k, v) for k, v in params.items() if v is not None):
        text = str(value)
        name = uri_encode(key, keep_slash=False)
        parts.append(f"{name}={uri_encode(text, keep_slash=False)}" if text else name)
    return "&".join(parts)


def canonical_uri(bucket: str | None, key: str | None) -> str:
    uri = "/"
    if bucket:
        uri += f"{bucket}/"
        if key:
            uri += key
    return uri_encode(uri, keep_slash=True)


def canonical_query(raw_query: str) -> str:
    """The received (or sent) query string, pairs sorted by name; ``+`` read as ``%20``."""
    pairs = []
    for part in raw_query.replace("+", "%20").split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((name, value))
    pairs.sort()
    return "&".join(f"{name}={value}" if value else name for name, value in pairs)


def is_signed(name: str, additional: Iterable[str] = ()) -> bool:
    low = name.lower()
    return low.startswith("x-oss-") or low in _ALWAYS_SIGNED or low in set(additional)


def canonical_headers(headers: Mapping[str, str], additional: Iterable[str] = ()) -> str:
    """``name:value\\n`` per signed header, names lower-cased and sorted, values trimmed."""
    extra = {a.lower() for a in additional}
    lines = sorted(
        (name.lower(), value.strip()) for name, value in headers.items() if is_signed(name, extra)
    )
    return "".join(f"{name}:{value}\n" for name, value in lines)


def additional_header_names(headers: Mapping[str, str], wanted: Iterable[str]) -> list[str]:
    """The additional headers actually signed: those of ``wanted`` that are present with a
    value and not signed anyway, lower-cased and sorted."""
    present = {k.lower() for k, v in headers.items() if v}
    unsigned = {h for h in present if not is_signed(h)}
    return sorted({w.lower() for w in wanted} & unsigned)


def canonical_request(
    method: str,
    bucket: str | None,
    key: str | None,
    raw_query: str,
    headers: Mapping[str, str],
    additional: list[str],
) -> str:
    payload = next(
        (v for k, v in headers.items() if k.lower() == "x-oss-content-sha256"), UNSIGNED_PAYLOAD
    )
    return "\n".join(
        [
            method.upper(),
            canonical_uri(bucket, key),
            canonical_query(raw_query),
            canonical_headers(headers, additional),
            ";".join(additional),
            payload,
        ]
    )


def scope(date: str, region: str) -> str:
    return f"{date}/{region}/{PRODUCT}/{_TERMINATOR}"


def string_to_sign(timestamp: str, region: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope(timestamp[:8], region)}\n{digest}"


def signing_key(secret: str, date: str, region: str) -> bytes:
    key = ("aliyun_v4" + secret).encode("utf-8")
    for part in (date, region, PRODUCT, _TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def signature(secret: str, timestamp: str, region: str, canonical: str) -> str:
    """Lower-case hex signature of ``canonical`` signed at ``timestamp`` (``yyyymmddTHHMMSSZ``)."""
    key = signing_key(secret, timestamp[:8], region)
    return hmac.new(
        key, string_to_sign(timestamp, region, canonical).encode("utf-8"), hashlib.sha256
    ).hexdigest()


def authorization(
    access_key_id: str, timestamp: str, region: str, additional: list[str], sig: str
) -> str:
    extra = f",AdditionalHeaders={';'.join(additional)}" if additional else ""
    cred = f"{access_key_id}/{scope(timestamp[:8], region)}"
    return f"{ALGORITHM} Credential={cred}{extra},Signature={sig}"


def timestamp(now: datetime) -> str:
    """``x-oss-date``: UTC, ``yyyymmddTHHMMSSZ``."""
    return now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def sign_headers(
    *,
    method: str,
    bucket: str | None,
    key: str | None,
    raw_query: str,
    headers: Mapping[str, str],
    credentials: Credentials,
    region: str,
    now: datetime,
    additional: Iterable[str] = (),
) -> dict[str, str]:
    """The headers to add to a request: dates, payload marker, STS token, ``Authorization``."""
    ts = timestamp(now)
    added = {
        "date": format_datetime(now.astimezone(timezone.utc), usegmt=True),
        "x-oss-date": ts,
        "x-oss-content-sha256": UNSIGNED_PAYLOAD,
    }
    if credentials.is_sts:
        assert credentials.security_token is not None
        added["x-oss-security-token"] = credentials.security_token.reveal()
    all_headers = {**{k.lower(): v for k, v in headers.items()}, **added}
    extra = additional_header_names(all_headers, additional)
    canonical = canonical_request(method, bucket, key, raw_query, all_headers, extra)
    sig = signature(credentials.access_key_secret.reveal(), ts, region, canonical)
    added["authorization"] = authorization(credentials.access_key_id, ts, region, extra, sig)
    return added


class OssV4Auth(httpx.Auth):
    """Signs one request for ``bucket``/``key`` (None, None: a service-level request).

    The query string must have been built with :func:`encode_query` (it is signed as sent). The
    date is taken when the request is signed, so a retry sent through the same auth is signed
    afresh.
    """

    def __init__(
        self,
        credentials: Credentials,
        region: str,
        bucket: str | None,
        key: str | None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._credentials = credentials
        self._region = region
        self._bucket = bucket
        self._key = key
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raw_query = request.url.query.decode("ascii")
        added = sign_headers(
            method=request.method,
            bucket=self._bucket,
            key=self._key,
            raw_query=raw_query,
            headers=dict(request.headers),
            credentials=self._credentials,
            region=self._region,
            now=self._clock(),
        )
        for name, value in added.items():
            request.headers[name] = value
        yield request
