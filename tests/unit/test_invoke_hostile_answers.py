"""FC 3.0 InvokeFunction against answers FC should never give: an endless body, request ids
that carry line breaks and a secret. Each ends in one short InvokeError; nothing is kept whole."""

from __future__ import annotations

import json

import httpx
import pytest

from edgescaler.cloud import acs
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.fc_invoke import FC3Invoker
from edgescaler.errors import InvokeError
from edgescaler.sensitive import Secret

SECRET = "fc-secret-Value-0123456789ab"


def invoker(handler: httpx.MockTransport) -> FC3Invoker:
    creds = Credentials("LTAI5tFcKeyId", Secret(SECRET))
    return FC3Invoker(
        "edgescaler",
        lambda: creds,
        endpoint="https://1.cn-beijing.fc.aliyuncs.com",
        transport=handler,
    )


def test_an_answer_larger_than_the_cap_is_abandoned_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(acs, "MAX_ANSWER_BYTES", 1000)
    big = httpx.MockTransport(lambda r: httpx.Response(200, content=b"x" * 5000))
    with pytest.raises(InvokeError) as info:
        invoker(big).invoke(b"{}", asynchronous=False)
    assert "Abandoned" in str(info.value) and "larger than 1000 bytes" in str(info.value)


def test_request_ids_are_quoted_short_one_line_and_redacted() -> None:
    noisy = ("rid\nnext " + SECRET) * 300
    body = json.dumps({"Code": "Throttled", "Message": "slow down", "RequestId": noisy})
    answer = httpx.MockTransport(lambda r: httpx.Response(429, content=body.encode()))
    with pytest.raises(InvokeError) as info:
        invoker(answer).invoke(b"{}", asynchronous=False)
    rid = info.value.request_id
    assert rid is not None and "\n" not in rid and len(rid) <= 80
    assert SECRET[:8] not in rid and SECRET[-8:] not in rid

    headed = httpx.MockTransport(
        lambda r: httpx.Response(202, headers={"x-fc-request-id": "a" * 5000})
    )
    assert len(invoker(headed).invoke(b"{}", asynchronous=True).request_id or "") <= 80
