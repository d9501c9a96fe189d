"""The KMS GetSecretValue client and the secret cache, against a fake KMS that checks signatures."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.kms import KMSClient, SecretCache, endpoint_for
from edgescaler.errors import ConfigError, KMSApiError, KMSTransportError, SecretError
from edgescaler.sensitive import Secret
from tests.support.kms import FakeKMS
from tests.support.loopback import free_port, serve, transport

AK = "LTAIkmsTestKeyId0001"
SK = "kms-test-access-key-secret-0001"
TOKEN = "CAIS-kms-test-sts-token-0001"
NAME = "edgescaler/ens-login-password"
VALUE = "Kms-Passw0rd!rotated"


def creds(sts: bool = True) -> Callable[[], Credentials]:
    c = Credentials(AK, Secret(SK), Secret(TOKEN) if sts else None)
    return lambda: c


@pytest.fixture
def fake() -> FakeKMS:
    kms = FakeKMS(keys={AK: SK}, security_token=TOKEN)
    kms.put(NAME, VALUE)
    return kms


def client(fake: FakeKMS, **kw: object) -> KMSClient:
    return KMSClient("cn-hangzhou", creds(), transport=transport(fake), **kw)  # type: ignore[arg-type]


def test_the_value_comes_back_as_a_secret_from_a_signed_request(fake: FakeKMS) -> None:
    with client(fake) as kms:
        got = kms.get_secret_value(NAME)
    assert got.value.reveal() == VALUE
    assert VALUE not in repr(got) and VALUE not in str(got)
    assert (got.name, got.version_id, got.version_stages) == (NAME, "v1", ("ACSCurrent",))
    assert got.request_id == "kms-fake-000001"
    (call,) = fake.calls
    assert call.problems == [] and call.status == 200
    # RPC style: the parameter travels in the query, RFC 3986 encoded ("/" as %2F), no body.
    assert call.target == "/?SecretName=edgescaler%2Fens-login-password"
    assert call.headers["x-acs-content-sha256"] == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert "content-type" not in call.headers  # what the official SDK sends (oracle test)


def test_over_a_real_socket_awkward_names_are_sent_as_signed(fake: FakeKMS) -> None:
    # Every character KMS allows in a name, and an ARN: "+", "=", "@", ":" and "/" are encoded.
    awkward = "acs:kms:cn-hangzhou:1234567890:secret/app/db+pw=1@x.y_z-0"
    fake.put(awkward, "Awkw4rd-Passw0rd")
    with serve(fake) as url, KMSClient("cn-hangzhou", creds(), endpoint=url) as kms:
        got = kms.get_secret_value(awkward, version_stage="ACSCurrent")
    assert got.value.reveal() == "Awkw4rd-Passw0rd"
    (call,) = fake.calls
    assert call.target == (
        "/?SecretName=acs%3Akms%3Acn-hangzhou%3A1234567890%3Asecret%2Fapp%2Fdb%2Bpw%3D1%40x.y_z-0"
        "&VersionStage=ACSCurrent"
    )
    assert call.problems == []


def test_a_missing_secret_is_a_typed_error_with_code_and_request_id(fake: FakeKMS) -> None:
    with client(fake) as kms, pytest.raises(KMSApiError) as info:
        kms.get_secret_value("no-such-secret")
    err = info.value
    assert isinstance(err, SecretError)
    assert (err.status, err.code, err.request_id) == (
        404,
        "Forbidden.ResourceNotFound",
        "kms-fake-000001",
    )
    assert str(err) == (
        "KMS GetSecretValue no-such-secret: HTTP 404 Forbidden.ResourceNotFound: "
        "The resource not found. (request id kms-fake-000001)"
    )


def test_wrong_credentials_are_refused_by_the_signature_check(fake: FakeKMS) -> None:
    bad = Credentials(AK, Secret("not-the-secret"), Secret(TOKEN))
    with (
        KMSClient("cn-hangzhou", lambda: bad, transport=transport(fake)) as kms,
        pytest.raises(KMSApiError) as info,
    ):
        kms.get_secret_value(NAME)
    assert info.value.code == "SignatureDoesNotMatch"
    assert fake.calls[0].problems == ["signature mismatch"]
    assert "not-the-secret" not in str(info.value)


def test_throttling_is_retried_once_then_reported(fake: FakeKMS) -> None:
    slept: list[float] = []
    fake.faults = [(400, "Rejected.Throttling")]
    with client(fake, sleep=slept.append) as kms:
        assert kms.get_secret_value(NAME).value.reveal() == VALUE
    assert slept == [0.2] and len(fake.calls) == 2

    fake.faults = [(400, "Rejected.Throttling"), (503, "ServiceUnavailable")]
    with client(fake, sleep=slept.append) as kms, pytest.raises(KMSApiError) as info:
        kms.get_secret_value(NAME)
    assert info.value.code == "ServiceUnavailable" and info.value.retryable


def test_a_permission_error_is_not_retried(fake: FakeKMS) -> None:
    fake.faults = [(403, "Forbidden.NoPermission")]
    with client(fake, sleep=lambda s: pytest.fail("retried")) as kms, pytest.raises(KMSApiError):
        kms.get_secret_value(NAME)
    assert len(fake.calls) == 1


def test_no_answer_is_a_transport_error() -> None:
    port = free_port()
    with (
        KMSClient(
            "cn-hangzhou", creds(), endpoint=f"http://127.0.0.1:{port}", max_retries=0
        ) as kms,
        pytest.raises(KMSTransportError) as info,
    ):
        kms.get_secret_value(NAME)
    assert "ConnectError" in str(info.value) and SK not in str(info.value)

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with (
        KMSClient(
            "cn-hangzhou", creds(), transport=httpx.MockTransport(timeout), max_retries=0
        ) as kms,
        pytest.raises(KMSTransportError, match="timeout: ReadTimeout"),
    ):
        kms.get_secret_value(NAME)


def test_an_answer_without_secret_data_is_not_a_value() -> None:
    def empty(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"RequestId": "r-1", "SecretName": NAME})

    with (
        KMSClient(
            "cn-hangzhou", creds(), transport=httpx.MockTransport(empty), max_retries=0
        ) as kms,
        pytest.raises(KMSTransportError, match=r"without SecretData \(request id r-1\)"),
    ):
        kms.get_secret_value(NAME)


def test_nothing_secret_reaches_the_logs(fake: FakeKMS, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with client(fake) as kms:
        kms.get_secret_value(NAME)
        with pytest.raises(KMSApiError):
            kms.get_secret_value("absent")
    assert "kms GetSecretValue secret=edgescaler/ens-login-password" in caplog.text
    for secret in (VALUE, SK, TOKEN):
        assert secret not in caplog.text


def test_endpoints_and_bad_input() -> None:
    assert endpoint_for("cn-beijing") == "https://kms.cn-beijing.aliyuncs.com"
    assert endpoint_for("cn-beijing", "https://kms-vpc.cn-beijing.aliyuncs.com/") == (
        "https://kms-vpc.cn-beijing.aliyuncs.com"
    )
    with pytest.raises(ConfigError, match="invalid KMS region"):
        endpoint_for("cn beijing")
    with pytest.raises(ConfigError, match="EDGESCALER_KMS_ENDPOINT"):
        endpoint_for("cn-beijing", "kms.example.com")
    with KMSClient("cn-hangzhou", creds()) as kms, pytest.raises(ConfigError, match="secret name"):
        kms.get_secret_value("bad\nname")


# --------------------------------------------------------------------------- cache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cached(fake: FakeKMS) -> Iterator[tuple[SecretCache, Clock]]:
    clock = Clock()
    with client(fake) as kms:
        yield SecretCache(lambda n: kms.get_secret_value(n).value, ttl=300, clock=clock), clock


def test_cache_fetches_once_per_ttl(fake: FakeKMS, cached: tuple[SecretCache, Clock]) -> None:
    cache, clock = cached
    assert cache.get(NAME).reveal() == VALUE
    clock.now += 299
    assert cache.get(NAME).reveal() == VALUE
    assert fake.fetches(NAME) == 1
    clock.now += 1  # expired exactly at ttl
    cache.get(NAME)
    assert fake.fetches(NAME) == 2


def test_invalidate_picks_up_a_rotated_value(
    fake: FakeKMS, cached: tuple[SecretCache, Clock]
) -> None:
    cache, _ = cached
    assert cache.get(NAME).reveal() == VALUE
    fake.put(NAME, "Rotated-Passw0rd!")
    assert cache.get(NAME).reveal() == VALUE  # still cached: nobody said it was rejected
    cache.invalidate(NAME)
    assert cache.get(NAME).reveal() == "Rotated-Passw0rd!"
    cache.invalidate("never-fetched")  # harmless
    assert fake.fetches(NAME) == 2


def test_errors_are_held_briefly_not_cached(
    fake: FakeKMS, cached: tuple[SecretCache, Clock]
) -> None:
    from edgescaler.cloud.kms import FAILURE_HOLD

    cache, clock = cached
    fake.faults = [(403, "Forbidden.NoPermission")]
    with pytest.raises(KMSApiError):
        cache.get(NAME)
    with pytest.raises(KMSApiError):  # the same answer, at once: KMS would now answer
        cache.get(NAME)
    clock.now += FAILURE_HOLD + 1
    assert cache.get(NAME).reveal() == VALUE


def test_concurrent_gets_fetch_once(fake: FakeKMS, cached: tuple[SecretCache, Clock]) -> None:
    cache, _ = cached
    barrier = threading.Barrier(8)
    out: list[str] = []

    def worker() -> None:
        barrier.wait()
        out.append(cache.get(NAME).reveal())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [VALUE] * 8 and fake.fetches(NAME) == 1


def test_a_slow_fetch_holds_only_its_own_name() -> None:
    """One secret's fetch (a slow KMS) must not hold a policy that needs another secret."""
    slow_started, release = threading.Event(), threading.Event()

    def fetch(name: str) -> Secret:
        if name == "slow":
            slow_started.set()
            assert release.wait(5)
        return Secret(f"{name}-value-0123")

    cache = SecretCache(fetch, ttl=60)
    slow = threading.Thread(target=cache.get, args=("slow",))
    slow.start()
    assert slow_started.wait(5)
    got: list[str] = []
    fast = threading.Thread(target=lambda: got.append(cache.get("fast").reveal()))
    fast.start()
    fast.join(2)  # while "slow" is still being fetched
    held = fast.is_alive()
    release.set()
    slow.join()
    fast.join()
    assert not held and got == ["fast-value-0123"]
    assert cache.get("slow").reveal() == "slow-value-0123"


def test_a_failed_fetch_answers_the_policies_waiting_for_it_at_once() -> None:
    """Four policies share a secret on a KMS that times out: one fetch, not four in a row
    (each would wait out its timeouts: 41 s for four against a 5 s deadline); after
    FAILURE_HOLD the next get tries again."""
    from edgescaler.cloud import kms as kms_mod
    from edgescaler.errors import SecretError

    now = [0.0]
    calls: list[str] = []
    started, release = threading.Event(), threading.Event()

    def hanging(name: str) -> Secret:
        calls.append(name)
        started.set()
        assert release.wait(5)
        raise SecretError(f"KMS secret {name}: timeout")

    cache = SecretCache(hanging, ttl=60, clock=lambda: now[0])
    errors: list[str] = []

    def get() -> None:
        try:
            cache.get("shared")
        except SecretError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=get) for _ in range(4)]
    threads[0].start()
    assert started.wait(5)
    for t in threads[1:]:
        t.start()
    release.set()
    for t in threads:
        t.join(5)
    assert calls == ["shared"] and len(errors) == 4 and all("timeout" in e for e in errors)
    now[0] += kms_mod.FAILURE_HOLD + 1
    with pytest.raises(SecretError):
        cache.get("shared")
    assert calls == ["shared", "shared"]


def test_cache_contract_checks() -> None:
    with pytest.raises(ConfigError, match="ttl"):
        SecretCache(lambda n: Secret("x"), ttl=0)
    leaky = SecretCache(lambda n: "plain text")  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="must return a Secret"):
        leaky.get("x")
    assert "plain" not in repr(leaky)
