"""The S3-protocol store against moto (and a misbehaving proxy in front of it).

The behaviour every backend shares is in test_store_contract.py; this file covers what only the
S3 backend has: the conditional-write probe, 412/409 handling, error mapping, credentials,
``open_store`` and lazy imports.
"""

from __future__ import annotations

import io
import multiprocessing
import subprocess
import sys
import time
from datetime import datetime, timezone
from queue import Empty
from typing import Any

import pytest

from edgescaler.activity import Activity
from edgescaler.cloud.credentials import Credentials
from edgescaler.errors import ConfigError, ConflictError, StoreError
from edgescaler.sensitive import Secret
from edgescaler.store import open_store
from edgescaler.store import s3 as s3store
from edgescaler.store.base import activity_key, normalize_prefix
from edgescaler.store.s3 import (
    CREATE_TRIES,
    PROBE_DIR,
    S3Store,
    addressing_style,
    client_credentials,
    oss_region,
)
from tests.support import builders
from tests.support.s3 import FAKE_KEY_ID, FAKE_SECRET, MotoS3, S3Proxy, free_port

CLUSTER = "c0123456789abcdef"
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


def claim(seq: int = 1, policy: str = "p") -> Activity:
    return builders.claim(seq, cluster=CLUSTER, at=T0, policy=policy)


def store_at(endpoint: str, moto: MotoS3, prefix: str, **kw: Any) -> S3Store:
    return S3Store(moto.bucket, prefix, endpoint_url=endpoint, **kw)


# -- pure helpers -------------------------------------------------------------------------


def test_endpoint_helpers() -> None:
    assert oss_region("https://s3.oss-cn-hangzhou.aliyuncs.com") == "cn-hangzhou"
    assert oss_region("https://s3.oss-cn-beijing-internal.aliyuncs.com") == "cn-beijing"
    assert oss_region("https://oss-ap-southeast-1.aliyuncs.com") == "ap-southeast-1"
    assert oss_region("http://127.0.0.1:9000") is None
    assert oss_region(None) is None
    assert addressing_style("https://s3.oss-cn-hangzhou.aliyuncs.com") == "virtual"
    assert addressing_style("http://minio.local:9000") == "path"
    assert addressing_style(None) == "virtual"
    assert normalize_prefix("/a//b/") == "a/b"
    assert normalize_prefix("/") == ""


def test_client_has_short_timeouts_few_retries_and_sigv4(moto_s3: MotoS3) -> None:
    store = S3Store(moto_s3.bucket, "x", endpoint_url=moto_s3.endpoint, probe=False)
    config = store.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (3, 5)
    # Config(retries={"max_attempts": 2}) means 2 retries: botocore stores 3 attempts in all.
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}
    assert config.signature_version == "s3v4"
    assert config.s3 == {"addressing_style": "path"}
    store.close()


# -- imports ------------------------------------------------------------------------------


def test_importing_the_store_and_handler_does_not_import_boto() -> None:
    code = (
        "import sys, edgescaler.store, edgescaler.store.s3, edgescaler.handler\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'moto'))\n"
        "print(' '.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""


# -- probe --------------------------------------------------------------------------------


def test_probe_passes_on_moto_cleans_up_and_is_cached(moto_s3: MotoS3, s3_proxy: S3Proxy) -> None:
    prefix = moto_s3.new_prefix()
    first = store_at(s3_proxy.url, moto_s3, prefix)
    probe_dir = f"{prefix}/{PROBE_DIR}"
    probe = [(s.method, s.status) for s in s3_proxy.seen if s.key.startswith(probe_dir)]
    assert probe == [("PUT", 200), ("PUT", 412), ("DELETE", 204)]
    assert moto_s3.keys(prefix) == []  # the probe object is gone

    s3_proxy.clear()
    second = store_at(s3_proxy.url, moto_s3, moto_s3.new_prefix())  # same endpoint and bucket
    assert s3_proxy.seen == []
    second.append(claim())
    assert second.get(CLUSTER, 1) == claim()
    first.close()
    second.close()


def test_probe_refuses_an_endpoint_that_ignores_if_none_match(
    moto_s3: MotoS3, s3_proxy: S3Proxy
) -> None:
    s3_proxy.strip_if_none_match = True
    prefix = moto_s3.new_prefix()
    with pytest.raises(ConfigError) as err:
        store_at(s3_proxy.url, moto_s3, prefix)
    message = str(err.value)
    assert "\n" not in message
    assert f"s3://{moto_s3.bucket}/{prefix}" in message
    assert "does not enforce conditional writes (If-None-Match: *)" in message
    assert "could scale out twice" in message
    # Both probe writes really reached moto (without the condition), and nothing is left.
    puts = [s for s in s3_proxy.seen if s.method == "PUT"]
    assert [(s.status, s.conditional) for s in puts] == [(200, False), (200, False)]
    assert moto_s3.keys(prefix) == []
    # A refusal is not cached: the next attempt probes (and refuses) again.
    with pytest.raises(ConfigError):
        store_at(s3_proxy.url, moto_s3, prefix)


def test_probe_on_a_missing_bucket_is_a_store_error_naming_the_code(moto_s3: MotoS3) -> None:
    with pytest.raises(StoreError) as err:
        S3Store("edgescaler-no-such-bucket", "p", endpoint_url=moto_s3.endpoint)
    assert "s3://edgescaler-no-such-bucket/p" in str(err.value)
    assert "NoSuchBucket (HTTP 404)" in str(err.value)


# -- create-only --------------------------------------------------------------------------


def test_412_is_a_conflict_without_extra_reads(moto_s3: MotoS3, s3_proxy: S3Proxy) -> None:
    store = store_at(s3_proxy.url, moto_s3, moto_s3.new_prefix(), probe=False)
    store.append(claim(policy="winner"))
    s3_proxy.clear()
    with pytest.raises(ConflictError) as err:
        store.append(claim(policy="loser"))
    assert err.value.key == activity_key(CLUSTER, 1)
    assert s3_proxy.calls() == [("PUT", 412)]
    got = store.get(CLUSTER, 1)
    assert got is not None and got.policy == "winner"


def test_409_then_the_retry_creates(moto_s3: MotoS3, s3_proxy: S3Proxy) -> None:
    prefix = moto_s3.new_prefix()
    store = store_at(s3_proxy.url, moto_s3, prefix, probe=False)
    s3_proxy.conflicts = 1
    store.append(claim())
    assert s3_proxy.calls() == [("PUT", 409), ("HEAD", 404), ("PUT", 200)]
    assert moto_s3.keys(prefix) == [f"{prefix}/{activity_key(CLUSTER, 1)}"]
    assert store.get(CLUSTER, 1) == claim()


def test_409_while_another_writer_won_is_a_conflict(moto_s3: MotoS3, s3_proxy: S3Proxy) -> None:
    prefix = moto_s3.new_prefix()
    other = store_at(moto_s3.endpoint, moto_s3, prefix, probe=False)
    store = store_at(s3_proxy.url, moto_s3, prefix, probe=False)
    other.append(claim(policy="other"))
    s3_proxy.conflicts = 1
    with pytest.raises(ConflictError):
        store.append(claim(policy="mine"))
    assert s3_proxy.calls() == [("PUT", 409), ("HEAD", 200)]
    got = store.get(CLUSTER, 1)
    assert got is not None and got.policy == "other"


def test_409_that_never_resolves_is_a_store_error(moto_s3: MotoS3, s3_proxy: S3Proxy) -> None:
    prefix = moto_s3.new_prefix()
    store = store_at(s3_proxy.url, moto_s3, prefix, probe=False)
    s3_proxy.conflicts = 100
    with pytest.raises(StoreError) as err:
        store.append(claim())
    assert not isinstance(err.value, ConflictError)
    assert "ConditionalRequestConflict" in str(err.value) and "undecided" in str(err.value)
    assert [s.method for s in s3_proxy.seen].count("PUT") == CREATE_TRIES
    assert moto_s3.keys(prefix) == []


def test_lost_reply_then_412_is_recognised_as_our_own_write(
    moto_s3: MotoS3, s3_proxy: S3Proxy
) -> None:
    # The first PUT lands but its reply is lost (500); botocore retries and gets 412. The
    # writer id in the object's metadata shows the object is ours: a win, not a conflict.
    store = store_at(s3_proxy.url, moto_s3, moto_s3.new_prefix(), probe=False)
    s3_proxy.lose_responses = 1
    assert store.append(claim(policy="mine")) == claim(policy="mine")
    assert s3_proxy.calls() == [("PUT", 500), ("PUT", 412), ("HEAD", 200)]
    # Another writer's object still reads as a conflict after a retried 412.
    s3_proxy.clear()
    s3_proxy.lose_responses = 1
    with pytest.raises(ConflictError):
        store.append(claim(policy="again"))  # first try gets 412 from moto, reported as 500
    got = store.get(CLUSTER, 1)
    assert got is not None and got.policy == "mine"


# -- keys, listing ------------------------------------------------------------------------


def test_keys_live_under_the_normalised_prefix(moto_s3: MotoS3) -> None:
    base = moto_s3.new_prefix()
    store = S3Store(moto_s3.bucket, f"/{base}//inner/", endpoint_url=moto_s3.endpoint, probe=False)
    store.append(claim())
    assert moto_s3.keys(base) == [f"{base}/inner/{activity_key(CLUSTER, 1)}"]
    assert store.describe() == f"s3://{moto_s3.bucket}/{base}/inner ({moto_s3.endpoint[7:]})"


def test_empty_prefix_uses_the_bucket_root(moto_s3: MotoS3) -> None:
    bucket = moto_s3.new_bucket()
    store = S3Store(bucket, "", endpoint_url=moto_s3.endpoint, probe=False)
    store.append(claim())
    assert store.claim_event("e1", T0)
    assert moto_s3.keys(bucket=bucket)[0] == activity_key(CLUSTER, 1)
    assert store.seqs(CLUSTER) == [1]


def test_list_reads_every_page(moto_s3: MotoS3) -> None:
    store = store_at(moto_s3.endpoint, moto_s3, moto_s3.new_prefix(), probe=False)
    store._page_size = 2
    for seq in (5, 1, 3, 2, 4):
        store.append(claim(seq))
    assert store.seqs(CLUSTER) == [1, 2, 3, 4, 5]
    assert store.get(CLUSTER, 9) is None


# -- failures -----------------------------------------------------------------------------


def test_unreachable_endpoint_is_a_quick_store_error_without_secrets(moto_s3: MotoS3) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(StoreError) as err:
        S3Store("edgescaler-bucket", "pre/fix", endpoint_url=endpoint)
    elapsed = time.monotonic() - started
    message = str(err.value)
    assert "s3://edgescaler-bucket/pre/fix" in message and "EndpointConnectionError" in message
    assert "\n" not in message
    assert FAKE_SECRET not in message and FAKE_KEY_ID not in message
    assert elapsed < 10  # 2 attempts, no long connect timeouts

    store = S3Store("edgescaler-bucket", "p", endpoint_url=endpoint, probe=False)
    with pytest.raises(StoreError, match="read activities/"):
        store.get(CLUSTER, 1)


def test_explicit_credentials_never_show_in_errors(moto_s3: MotoS3) -> None:
    creds = Credentials(
        "LTAIexplicitkeyid", Secret("explicit-secret-value"), Secret("sts-token-value")
    )
    store = S3Store(
        "edgescaler-bucket",
        "p",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        probe=False,
        credentials=creds,
    )
    with pytest.raises(StoreError) as err:
        store.append(claim())
    text = f"{err.value} {store.describe()} {store!r}"
    assert "explicit-secret-value" not in text and "sts-token-value" not in text


# -- credentials ----------------------------------------------------------------------------


def _signed_key_id(seen: list[Any]) -> tuple[str, str | None]:
    auth = seen[-1].headers["authorization"]
    key_id = auth.split("Credential=", 1)[1].split("/", 1)[0]
    return key_id, seen[-1].headers.get("x-amz-security-token")


def test_alibaba_credentials_are_used_when_aws_ones_are_absent(
    moto_s3: MotoS3, s3_proxy: S3Proxy
) -> None:
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIalibabakeyid",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "alibaba-secret-value",
        "ALIBABA_CLOUD_SECURITY_TOKEN": "alibaba-sts-token",
    }
    store = store_at(s3_proxy.url, moto_s3, moto_s3.new_prefix(), probe=False, env=env)
    assert store.get(CLUSTER, 1) is None
    assert _signed_key_id(s3_proxy.seen) == ("LTAIalibabakeyid", "alibaba-sts-token")
    assert "alibaba-secret-value" not in f"{store.describe()} {store!r}"

    # With an AWS key pair in the same environment, the AWS pair wins (the S3 protocol's own).
    both = store_at(
        s3_proxy.url,
        moto_s3,
        moto_s3.new_prefix(),
        probe=False,
        env={**env, "AWS_ACCESS_KEY_ID": FAKE_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET},
    )
    assert both.get(CLUSTER, 1) is None
    assert _signed_key_id(s3_proxy.seen) == (FAKE_KEY_ID, None)
    # Half a pair is a clear error naming the variables, not a silent fallback.
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        store_at(
            s3_proxy.url,
            moto_s3,
            moto_s3.new_prefix(),
            probe=False,
            env={"AWS_ACCESS_KEY_ID": FAKE_KEY_ID},
        )


def test_clients_for_the_same_credentials_are_reused_across_stores(moto_s3: MotoS3) -> None:
    # A warm FC instance opens the store on every invocation with the same STS credentials.
    def creds(token: str) -> Credentials:
        return Credentials(FAKE_KEY_ID, Secret(FAKE_SECRET), Secret(token))

    def open_with(c: Credentials) -> S3Store:
        return S3Store(
            moto_s3.bucket,
            moto_s3.new_prefix(),
            endpoint_url=moto_s3.endpoint,
            probe=False,
            credentials=c,
        )

    first = open_with(creds("token-1"))
    first.close()  # a shared client stays open for the next invocation
    second = open_with(creds("token-1"))
    assert second.client is first.client
    assert second.get(CLUSTER, 1) is None  # and still works after the first store closed
    rotated = open_with(creds("token-2"))
    assert rotated.client is not first.client


def test_client_credentials_choice() -> None:
    alibaba = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIx", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s"}
    got = client_credentials(alibaba)
    assert got is not None and got.access_key_id == "LTAIx" and got.security_token is None
    aws = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "aws-s", "AWS_SESSION_TOKEN": "t"}
    got = client_credentials({**alibaba, **aws})
    assert got is not None and got.access_key_id == "AKID" and got.is_sts
    assert client_credentials({}) is None  # boto's own chain: profiles, instance roles
    explicit = Credentials("K", Secret("S"))
    assert client_credentials({**alibaba, **aws}, explicit) is explicit
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY"):
        client_credentials({"AWS_ACCESS_KEY_ID": "AKID"})
    with pytest.raises(ConfigError, match="ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        client_credentials({"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIx"})


# -- open_store -----------------------------------------------------------------------------


def test_open_store_s3_round_trip(moto_s3: MotoS3) -> None:
    prefix = moto_s3.new_prefix()
    store = open_store(f"s3://{moto_s3.bucket}/{prefix}", s3_endpoint=moto_s3.endpoint)
    assert isinstance(store, S3Store)
    store.append(claim())
    assert store.claim_event("timer:t:2026-11-27T08:00:00Z", T0)
    again = open_store(f"s3://{moto_s3.bucket}/{prefix}/", s3_endpoint=moto_s3.endpoint)
    assert again.get(CLUSTER, 1) == claim()
    assert not again.claim_event("timer:t:2026-11-27T08:00:00Z", T0)
    assert moto_s3.keys(prefix)[0] == f"{prefix}/{activity_key(CLUSTER, 1)}"
    store.close()
    again.close()


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "s3://bucket/p?region=x"])
def test_open_store_rejects_bad_s3_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="s3://bucket/prefix"):
        open_store(url, s3_endpoint="http://127.0.0.1:9")


def test_open_store_names_s3_among_supported_stores() -> None:
    with pytest.raises(ConfigError, match=r"s3://bucket/prefix"):
        open_store("redis://x")


# -- many processes -------------------------------------------------------------------------


def _race_append(endpoint: str, bucket: str, prefix: str, i: int, barrier: Any, out: Any) -> None:
    try:
        store = S3Store(bucket, prefix, endpoint_url=endpoint, probe=False)
        barrier.wait(timeout=60)
        store.append(claim(policy=f"p{i}"))
        out.put((i, "won"))
    except ConflictError:
        out.put((i, "conflict"))
    except BaseException as exc:
        out.put((i, f"error: {type(exc).__name__}: {exc}"))


@pytest.mark.slow  # 8 interpreters importing botocore: a few seconds on 2 cores
def test_eight_processes_race_for_one_seq_and_one_wins(moto_s3: MotoS3) -> None:
    ctx = multiprocessing.get_context("spawn")
    prefix = moto_s3.new_prefix()
    barrier = ctx.Barrier(8)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_race_append, args=(moto_s3.endpoint, moto_s3.bucket, prefix, i, barrier, out)
        )
        for i in range(8)
    ]
    for p in procs:
        p.start()
    results: dict[int, str] = {}
    try:
        while len(results) < 8:
            i, outcome = out.get(timeout=90)
            results[i] = outcome
    except Empty:
        pytest.fail(f"only {len(results)} of 8 processes answered: {results}")
    finally:
        for p in procs:
            p.join(timeout=10)
    winners = [i for i, r in results.items() if r == "won"]
    assert sorted(results.values()) == ["conflict"] * 7 + ["won"], results
    got = store_at(moto_s3.endpoint, moto_s3, prefix, probe=False).get(CLUSTER, 1)
    assert got is not None and got.policy == f"p{winners[0]}"


def test_a_listing_truncated_without_a_continuation_token_is_a_store_error() -> None:
    class Truncated(_EndlessBucket):
        def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]:
            return {"Contents": [{"Key": "k"}], "IsTruncated": True}

    store = S3Store("b", "p", client=Truncated(), probe=False)
    with pytest.raises(StoreError, match="truncated without a continuation token"):
        store.recent(CLUSTER, T0)


class _EndlessBucket:
    """A bucket (a client at the edge we cannot reach) whose listing is always "truncated" and
    whose one object is larger than any activity."""

    class meta:
        endpoint_url = "https://s3.example.invalid"

    def __init__(self) -> None:
        self.pages = 0

    def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]:
        self.pages += 1
        return {"Contents": [{"Key": "k"}], "IsTruncated": True, "NextContinuationToken": "t"}

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        return {"Body": io.BytesIO(b"x" * (s3store.MAX_BODY + 10))}


def test_an_endless_listing_and_an_oversized_object_are_store_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(s3store, "MAX_LIST_PAGES", 3)
    bucket = _EndlessBucket()
    store = S3Store("b", "p", client=bucket, probe=False)
    with pytest.raises(StoreError, match="more than 3 pages"):
        store.recent(CLUSTER, T0)
    assert bucket.pages == 3
    with pytest.raises(StoreError, match="ResponseTooLarge"):
        store.get(CLUSTER, 1)


@pytest.mark.parametrize(
    "name", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
)
def test_aws_credentials_with_a_line_break_are_refused_by_name(name: str) -> None:
    from edgescaler.errors import ConfigError
    from edgescaler.store.s3 import client_credentials

    env = {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIK7MDENGbPxRfiCY",
        "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEBYaDH",
    }
    env[name] = env[name][:6] + "\nabc" + env[name][6:]
    with pytest.raises(ConfigError) as info:
        client_credentials(env)
    text = str(info.value)
    assert text.startswith(name) and "line break" in text
    assert env[name][:6] not in text.replace(name, "")
