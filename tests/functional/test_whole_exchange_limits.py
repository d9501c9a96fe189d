"""One limit on a whole exchange, headers included (``acs.bounded``): a server that sends a status
line and then a header byte every 0.3 s (no single read waits long) is cut off at the exchange's
time, for a CS GET, the ScaleOutCluster POST (whose outcome is then unknown: it was sent) and an
OSS request. Before, httpx waited for as long as the server kept trickling.

Each call runs in a thread with a 30 s guard: the calls end in about their 1.5-2 s limit, and the
server would trickle for as long as the test lasts (a guard against a hang, not a speed check).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.cs import CSClient
from edgescaler.cloud.oss import OSSClient, OSSFailure
from edgescaler.errors import CSTransportError
from edgescaler.sensitive import Secret
from tests.support.prometheus import FaultServer

CREDS = Credentials("LTAI5tExampleKeyId", Secret("example-key-secret-0123456789"))
GUARD = 30.0


@pytest.fixture
def trickling() -> Iterator[FaultServer]:
    with FaultServer() as server:
        server.trickle_headers(0.3)
        yield server


def raised(call: Callable[[], Any]) -> BaseException:
    """The exception ``call`` ended with, within :data:`GUARD` seconds."""
    got: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test
            got.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(GUARD)
    assert not worker.is_alive(), f"still waiting for the headers after {GUARD:g} s"
    assert got, "the call returned although the headers never ended"
    return got[0]


def cs(server: FaultServer) -> CSClient:
    return CSClient(
        "cn-hangzhou",
        lambda: CREDS,
        endpoint=server.url,
        connect_timeout=0.5,
        read_timeout=1.0,
        max_retries=0,
    )


def test_a_cs_get_whose_headers_never_end_is_cut_at_its_time(trickling: FaultServer) -> None:
    with cs(trickling) as client:
        exc = raised(lambda: client.list_nodes("c0123456789abcdef"))
    assert isinstance(exc, CSTransportError) and "timeout" in str(exc), exc


def test_a_post_whose_headers_never_end_is_cut_and_its_outcome_unknown(
    trickling: FaultServer,
) -> None:
    with cs(trickling) as client:
        exc = raised(lambda: client.scale_out("c0123456789abcdef", {"count": 1}))
    assert isinstance(exc, CSTransportError) and exc.may_have_acted, exc


def test_an_oss_request_whose_headers_never_end_is_cut_at_its_time(
    trickling: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgescaler.cloud import oss

    monkeypatch.setattr(oss, "ANSWER_SECONDS", 1.5)
    client = OSSClient(trickling.url, "bucket", "cn-hangzhou", CREDS, attempts=1)
    exc = raised(lambda: client.request("GET", "k"))
    assert isinstance(exc, OSSFailure), exc


def test_the_bounded_clients_still_go_through_an_environment_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx mounts no proxy from the environment when it is given a transport: the bounded
    clients keep httpx's own transports (and its proxy mounts) and wrap their sockets."""
    with FaultServer() as proxy:
        proxy.reply(200, '{"nodes": [], "page": {"total_count": 0}}')
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = CSClient(
            "cn-hangzhou", lambda: CREDS, endpoint="http://cs.example.invalid", max_retries=0
        )
        with client:
            assert client.list_nodes("c0123456789abcdef") == []
        assert proxy.requests and proxy.requests[0].startswith("http://cs.example.invalid/")
