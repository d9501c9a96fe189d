"""The OSS client against answers no real bucket should give: ids that carry secrets and line
breaks, a body that trickles, a listing that never ends. Each ends in one short OSSFailure."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from edgescaler.cloud import oss
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.oss import OSSClient, OSSFailure
from edgescaler.sensitive import Secret

SECRET = "oss-secret-Value-0123456789"


def client(handler: httpx.MockTransport) -> OSSClient:
    creds = Credentials("LTAI5tOssKeyId", Secret(SECRET))
    http = httpx.Client(transport=handler)
    return OSSClient("https://oss-cn-beijing.aliyuncs.com", "b-1", "cn-beijing", creds, http=http)


def test_request_id_and_ec_of_an_error_are_quoted_short_and_redacted() -> None:
    noisy = ("id\nwith a break " + SECRET + " ") * 400
    body = (
        "<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>no</Message>"
        f"<RequestId>{noisy}</RequestId><EC>{noisy}</EC></Error>"
    )
    c = client(httpx.MockTransport(lambda r: httpx.Response(403, text=body)))
    with pytest.raises(OSSFailure) as info:
        c.request("GET", "k")
    text = str(info.value)
    assert "\n" not in text and len(text) < 300
    assert SECRET[:8] not in text and SECRET[-8:] not in text
    assert text.startswith("AccessDenied (HTTP 403): no (request id ")


class _Trickle(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        for _ in range(50):
            time.sleep(0.05)
            yield b"x"


def test_a_trickled_answer_is_abandoned_when_its_time_is_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(oss, "ANSWER_SECONDS", 0.3)
    c = client(httpx.MockTransport(lambda r: httpx.Response(200, stream=_Trickle())))
    start = time.monotonic()
    with pytest.raises(OSSFailure) as info:
        c.request("PUT", "k", body=b"{}")
    assert time.monotonic() - start < 1.5  # the whole trickle would take 2.5 s
    assert info.value.code == "ResponseAbandoned"
    assert info.value.maybe_applied  # the server answered: the write may have been applied


def test_a_listing_truncated_without_a_continuation_token_is_malformed() -> None:
    """The rest of the keys exist but cannot be asked for: the newest activities would be
    missing and every claim of the cluster lost on a key that exists."""

    def truncated(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            text="<ListBucketResult><Contents><Key>a</Key></Contents>"
            "<IsTruncated>true</IsTruncated></ListBucketResult>",
        )

    with pytest.raises(OSSFailure) as info:
        client(httpx.MockTransport(truncated)).list_keys("p/")
    assert info.value.code == "MalformedListResponse" and "continuation token" in str(info.value)


def test_a_listing_that_never_ends_is_cut_at_max_list_pages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(oss, "MAX_LIST_PAGES", 3)
    pages: list[str] = []

    def endless(request: httpx.Request) -> httpx.Response:
        pages.append(str(request.url))
        return httpx.Response(
            200,
            text="<ListBucketResult><Contents><Key>a</Key></Contents>"
            "<IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken>"
            "</ListBucketResult>",
        )

    with pytest.raises(OSSFailure) as info:
        client(httpx.MockTransport(endless)).list_keys("p/")
    assert info.value.code == "ListTooLong"
    assert len(pages) == 3
