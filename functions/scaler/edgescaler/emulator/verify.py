"""The emulator's check of a received ACS3-HMAC-SHA256 request, as CS would check it.

Deliberately a second implementation of the server side: the rules (what must be signed, the
clock window, the order of the checks, the error codes) are the emulator's own and live only
here (:data:`REQUIRED_SIGNED`); only the canonical request and the HMAC come from
:mod:`edgescaler.cloud.signing`, whose pure functions golden vectors and the official SDK pin
down. ``tests/support/acs_verify.py`` is a third, independent verifier on purpose (the signing
oracle tests use it): do not share rules with it.

Rejections, in the order they are checked::

    400 MissingAuthorization              no Authorization header
    400 InvalidAuthorization              not ``ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,
                                          Signature=..``
    404 InvalidAccessKeyId.NotFound       unknown access key id
    400 MissingSecurityToken              emulator has an STS token, request carries none
    400 InvalidSecurityToken.Mismatch     token differs (or one is sent to an emulator without STS)
    400 IncompleteSignature               a header of REQUIRED_SIGNED (with STS also
                                          x-acs-security-token) is not signed or absent, or an
                                          ``x-acs-*`` header is present but not signed
    400 ContentSha256Mismatch             x-acs-content-sha256 is not the sha256 of the body
    400 InvalidTimeStamp.Format/.Expired  x-acs-date malformed, or more than 15 min off the clock
    400 InvalidAction.Mismatch            x-acs-action is not the route's action
    400 InvalidVersion                    x-acs-version is not 2015-12-15
    400 SignatureDoesNotMatch             recomputed over the raw path and raw query received
    400 SignatureNonceUsed                the nonce was seen before (checked last, atomically,
                                          by the world: :meth:`World.use_nonce`)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime, timezone

from edgescaler.cloud import signing
from edgescaler.emulator.api import ApiError
from edgescaler.emulator.config import API_VERSION

MAX_CLOCK_SKEW = 15 * 60.0

# The headers every request must sign (reference/cs-api.md §3.2); with STS credentials also
# x-acs-security-token.
REQUIRED_SIGNED = frozenset(
    {
        "host",
        "x-acs-action",
        "x-acs-content-sha256",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-version",
    }
)


def _merge_headers(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased names; repeated headers merged the way the signer merges them."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.lower(), []).append(value.strip())
    return {name: ",".join(sorted(values)) for name, values in merged.items()}


def _parse_authorization(value: str) -> tuple[str, list[str], str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != signing.ALGORITHM:
        raise ApiError(
            400, "InvalidAuthorization", f"unsupported algorithm; use {signing.ALGORITHM}"
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep or key in parts:
            raise ApiError(400, "InvalidAuthorization", "malformed Authorization header")
        parts[key] = val.strip()
    if set(parts) != {"Credential", "SignedHeaders", "Signature"}:
        raise ApiError(
            400,
            "InvalidAuthorization",
            "Authorization must hold exactly Credential, SignedHeaders and Signature",
        )
    names = parts["SignedHeaders"].split(";")
    if not parts["Credential"] or not parts["Signature"] or not all(names):
        raise ApiError(400, "InvalidAuthorization", "empty Credential, SignedHeaders or Signature")
    if any(n != n.lower() for n in names) or len(set(names)) != len(names):
        raise ApiError(
            400, "InvalidAuthorization", "SignedHeaders must be distinct lower-case names"
        )
    return parts["Credential"], names, parts["Signature"]


def verify_signature(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    action: str,
    access_key_id: str,
    access_key_secret: str,
    security_token: str | None,
    now: float,
) -> str:
    """Check an ACS3-HMAC-SHA256 request; return its nonce (the caller checks it for reuse).

    Raises :class:`ApiError` with the codes in the module docstring. ``raw_path`` and
    ``raw_query`` must be exactly as received: they are what the client signed.
    """
    hdr = _merge_headers(headers)
    auth = hdr.get("authorization", "")
    if not auth:
        raise ApiError(400, "MissingAuthorization", "the Authorization header is missing")
    key_id, names, sig = _parse_authorization(auth)
    if key_id != access_key_id:
        raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")

    token = hdr.get("x-acs-security-token")
    if security_token is not None:
        if not token:
            raise ApiError(
                400,
                "MissingSecurityToken",
                "x-acs-security-token is required for these STS credentials",
            )
        if not hmac.compare_digest(token.encode("utf-8"), security_token.encode("utf-8")):
            raise ApiError(
                400,
                "InvalidSecurityToken.Mismatch",
                "the security token does not match the access key",
            )
    elif token is not None:
        raise ApiError(
            400,
            "InvalidSecurityToken.Mismatch",
            "a security token was sent but this access key is not an STS credential",
        )

    required = set(REQUIRED_SIGNED)
    if security_token is not None:
        required.add("x-acs-security-token")
    missing = sorted(required - set(names))
    if missing:
        raise ApiError(
            400, "IncompleteSignature", f"SignedHeaders must include {', '.join(missing)}"
        )
    unsigned = sorted(n for n in hdr if n.startswith("x-acs-") and n not in names)
    if unsigned:
        raise ApiError(
            400, "IncompleteSignature", f"headers present but not signed: {', '.join(unsigned)}"
        )
    absent = [n for n in names if not hdr.get(n)]
    if absent:
        raise ApiError(
            400,
            "IncompleteSignature",
            f"signed headers missing from the request: {', '.join(absent)}",
        )

    content_sha = hdr["x-acs-content-sha256"]
    if content_sha != hashlib.sha256(body).hexdigest():
        raise ApiError(
            400,
            "ContentSha256Mismatch",
            "x-acs-content-sha256 is not the SHA-256 of the body received",
        )

    try:
        date = datetime.strptime(hdr["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc
        )
    except ValueError:
        raise ApiError(
            400, "InvalidTimeStamp.Format", "x-acs-date must be UTC YYYY-MM-DDTHH:MM:SSZ"
        ) from None
    skew = date.timestamp() - now
    if abs(skew) > MAX_CLOCK_SKEW:
        raise ApiError(
            400,
            "InvalidTimeStamp.Expired",
            f"x-acs-date is {skew:+.0f} s off the server clock (limit 15 minutes)",
        )

    if hdr["x-acs-action"] != action:
        raise ApiError(
            400,
            "InvalidAction.Mismatch",
            f"x-acs-action {hdr['x-acs-action']!r} does not match this route ({action})",
        )
    if hdr["x-acs-version"] != API_VERSION:
        raise ApiError(400, "InvalidVersion", f"x-acs-version must be {API_VERSION}")

    canonical = signing.canonical_request(
        method, raw_path, signing.canonical_query_from_raw(raw_query), hdr, names, content_sha
    )
    expected = signing.signature(access_key_secret, canonical)
    if not hmac.compare_digest(expected.encode("ascii"), sig.encode("utf-8", "replace")):
        string_to_sign = signing.string_to_sign(canonical).replace("\n", "\\n")
        raise ApiError(
            400,
            "SignatureDoesNotMatch",
            f"the request signature does not match; server string to sign: {string_to_sign}",
        )
    return hdr["x-acs-signature-nonce"]
