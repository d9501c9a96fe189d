"""The OSS store against OSS's dialect (tests/support/oss.py: a layer over moto that checks every
signature with the official SDK's signer).

The behaviour every backend shares is in test_store_contract.py; this file covers what only the
OSS backend has: the versioning and create-only start-up check, ``FileAlreadyExists`` versus any
other 409, lost replies, credentials, errors, settings and ``open_store``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgescaler.activity import Activity, Status
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.oss import OSSClient, OSSFailure, default_endpoint, endpoint_region
from edgescaler.cloud.oss_signing import OssV4Auth
from edgescaler.errors import ConfigError, ConflictError, StoreError
from edgescaler.sensitive import Secret
from edgescaler.settings import Settings
from edgescaler.store import open_store
from edgescaler.store.base import activity_key
from edgescaler.store.oss import PROBE_DIR, OSSStore, resolve_region
from tests.support import builders
from tests.support.oss import KEY_ID, OSS, SECRET, TOKEN, OSSLayer, credentials
from tests.support.s3 import free_port

CLUSTER = "c0123456789abcdef"
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


def claim(seq: int = 1, policy: str = "p") -> Activity:
    return builders.claim(seq, cluster=CLUSTER, at=T0, policy=policy)


def store_at(layer: OSSLayer, bucket: str, prefix: str, **kw: Any) -> OSSStore:
    kw.setdefault("credentials", credentials())
    return OSSStore(bucket, prefix, endpoint=layer.url, region=layer.region, **kw)


# -- start-up check ---------------------------------------------------------------------------


def test_start_up_check_reads_versioning_probes_cleans_up_and_is_cached(
    oss: OSS, oss_layer: OSSLayer
) -> None:
    prefix = oss.new_prefix()
    first = store_at(oss_layer, oss.bucket, prefix)
    probe_key = next(s.key for s in oss_layer.seen if s.method == "PUT")
    assert probe_key.startswith(f"{prefix}/{PROBE_DIR}")
    assert [(s.method, s.query, s.status, s.code) for s in oss_layer.seen] == [
        ("GET", "versioning", 200, None),
        ("PUT", "", 200, None),
        ("PUT", "", 409, "FileAlreadyExists"),
        ("DELETE", "", 204, None),
    ]
    assert all(s.headers.get("x-oss-forbid-overwrite") == "true" for s in oss_layer.seen[1:3])
    assert oss.keys(prefix) == []

    oss_layer.clear()
    second = store_at(oss_layer, oss.bucket, oss.new_prefix())  # same endpoint and bucket
    assert oss_layer.seen == []
    second.append(claim())
    assert second.get(CLUSTER, 1) == claim()
    first.close()
    second.close()


@pytest.mark.parametrize("status", ["Enabled", "Suspended"])
def test_a_versioned_bucket_is_refused(oss: OSS, oss_layer: OSSLayer, status: str) -> None:
    bucket = oss.new_bucket(versioning=status)
    with pytest.raises(ConfigError) as err:
        store_at(oss_layer, bucket, "p")
    message = str(err.value)
    assert "\n" not in message
    assert f"oss://{bucket}/p" in message and f"bucket versioning is {status}" in message
    assert "refusing to run" in message
    assert oss_layer.calls() == [("GET", 200)]  # nothing written
    with pytest.raises(ConfigError):  # a refusal is not cached
        store_at(oss_layer, bucket, "p")


def test_an_unversioned_bucket_is_accepted_and_its_status_read_as_none(
    oss: OSS, oss_layer: OSSLayer
) -> None:
    store = store_at(oss_layer, oss.bucket, "p", probe=False)
    assert store.client.versioning() is None
    versioned = store_at(oss_layer, oss.new_bucket(versioning="Enabled"), "p", probe=False)
    assert versioned.client.versioning() == "Enabled"


def test_an_endpoint_that_ignores_forbid_overwrite_is_refused(
    oss: OSS, oss_layer: OSSLayer
) -> None:
    oss_layer.ignore_forbid_overwrite = True
    prefix = oss.new_prefix()
    with pytest.raises(ConfigError) as err:
        store_at(oss_layer, oss.bucket, prefix)
    message = str(err.value)
    assert "\n" not in message
    assert "does not enforce create-only writes (x-oss-forbid-overwrite: true)" in message
    assert "could scale out twice" in message
    puts = [
        (s.status, s.headers.get("x-oss-forbid-overwrite"))
        for s in oss_layer.seen
        if s.method == "PUT"
    ]
    assert puts == [(200, "true"), (200, "true")]  # both writes went through
    assert oss.keys(prefix) == []  # and the probe object is gone
    with pytest.raises(ConfigError):
        store_at(oss_layer, oss.bucket, prefix)  # not cached


def test_versioning_access_denied_is_a_store_error_naming_the_ram_action(
    oss: OSS, oss_layer: OSSLayer
) -> None:
    oss_layer.versioning_error = "AccessDenied"
    with pytest.raises(StoreError) as err:
        store_at(oss_layer, oss.bucket, "p")
    assert not isinstance(err.value, ConflictError)
    assert "AccessDenied (HTTP 403)" in str(err.value)
    assert "oss:GetBucketVersioning" in str(err.value)


def test_a_missing_bucket_is_a_store_error_naming_the_code(oss: OSS, oss_layer: OSSLayer) -> None:
    with pytest.raises(StoreError) as err:
        store_at(oss_layer, "edgescaler-no-such-bucket", "p")
    assert "oss://edgescaler-no-such-bucket/p" in str(err.value)
    assert "NoSuchBucket (HTTP 404)" in str(err.value)
    assert "EC 0015-00000101" in str(err.value)


# -- create-only ------------------------------------------------------------------------------


def test_file_already_exists_is_a_conflict_without_extra_reads(
    oss: OSS, oss_layer: OSSLayer
) -> None:
    store = store_at(oss_layer, oss.bucket, oss.new_prefix(), probe=False)
    store.append(claim(policy="winner"))
    oss_layer.clear()
    with pytest.raises(ConflictError) as err:
        store.append(claim(policy="loser"))
    assert err.value.key == activity_key(CLUSTER, 1)
    assert [(s.method, s.status, s.code) for s in oss_layer.seen] == [
        ("PUT", 409, "FileAlreadyExists")
    ]
    got = store.get(CLUSTER, 1)
    assert got is not None and got.policy == "winner"


def test_a_409_with_another_code_is_a_store_error_not_a_lost_race(
    oss: OSS, oss_layer: OSSLayer
) -> None:
    prefix = oss.new_prefix()
    store = store_at(oss_layer, oss.bucket, prefix, probe=False)
    oss_layer.conflicts = ["FileImmutable"]
    with pytest.raises(StoreError) as err:
        store.append(claim())
    assert not isinstance(err.value, ConflictError)
    assert "create activities/" in str(err.value)
    assert "FileImmutable (HTTP 409)" in str(err.value)
    assert oss_layer.calls() == [("PUT", 409)]  # not retried, not re-read
    assert oss.keys(prefix) == []
    assert store.claim_event("e-1", T0)  # the store still works afterwards
    assert store.event("e-1") is not None


def test_a_lost_reply_then_file_already_exists_is_our_own_write(
    oss: OSS, oss_layer: OSSLayer
) -> None:
    # The first PUT lands but its answer is lost (500); the retry gets 409 FileAlreadyExists.
    # The writer id in the object's metadata shows that the object is ours: a win.
    store = store_at(oss_layer, oss.bucket, oss.new_prefix(), probe=False)
    oss_layer.lose_responses = 1
    assert store.append(claim(policy="mine")) == claim(policy="mine")
    assert [(s.method, s.status, s.code) for s in oss_layer.seen] == [
        ("PUT", 500, "InternalError"),
        ("PUT", 409, "FileAlreadyExists"),
        ("HEAD", 200, None),
    ]
    # Another writer's object still reads as a conflict after a retried 409.
    oss_layer.clear()
    oss_layer.lose_responses = 1
    with pytest.raises(ConflictError):
        store.append(claim(policy="again"))
    assert [s.method for s in oss_layer.seen] == ["PUT", "PUT", "HEAD"]
    got = store.get(CLUSTER, 1)
    assert got is not None and got.policy == "mine"


def test_if_none_match_is_answered_501_and_the_store_never_sends_it(
    oss: OSS, oss_layer: OSSLayer
) -> None:
    client = OSSClient(oss_layer.url, oss.bucket, oss_layer.region, credentials())
    with pytest.raises(OSSFailure) as err:
        client.request("PUT", "x/conditional", headers={"If-None-Match": "*"}, body=b"{}")
    assert (err.value.status, err.value.code) == (501, "NotImplemented")
    store = store_at(oss_layer, oss.bucket, oss.new_prefix())
    store.append(claim())
    store.update(claim().with_status(Status.SUBMITTED, T0, task_id="T-1"))
    assert store.log(CLUSTER)[0].task_id == "T-1"
    assert not any(
        "if-none-match" in s.headers or "if-match" in s.headers for s in oss_layer.seen[1:]
    )


# -- keys, listing ----------------------------------------------------------------------------


def test_keys_live_under_the_normalised_prefix(oss: OSS, oss_layer: OSSLayer) -> None:
    base = oss.new_prefix()
    store = store_at(oss_layer, oss.bucket, f"/{base}//inner/", probe=False)
    store.append(claim())
    assert oss.keys(base) == [f"{base}/inner/{activity_key(CLUSTER, 1)}"]
    assert store.describe() == f"oss://{oss.bucket}/{base}/inner ({oss_layer.url[7:]})"


def test_list_reads_every_page_and_an_empty_prefix_is_the_bucket_root(
    oss: OSS, oss_layer: OSSLayer
) -> None:
    bucket = oss.new_bucket()
    store = store_at(oss_layer, bucket, "", probe=False)
    store._page_size = 2
    for seq in (5, 1, 3, 2, 4):
        store.append(claim(seq))
    assert store.claim_event("e1", T0)
    oss_layer.clear()
    assert store.seqs(CLUSTER) == [1, 2, 3, 4, 5]
    assert [s.method for s in oss_layer.seen] == ["GET", "GET", "GET"]  # three pages
    assert oss.keys(bucket=bucket)[0] == activity_key(CLUSTER, 1)
    assert store.get(CLUSTER, 9) is None


# -- credentials and secrets ------------------------------------------------------------------


def test_every_request_carries_the_sts_token_and_is_signed_with_the_key(
    oss: OSS, oss_layer: OSSLayer
) -> None:
    store = store_at(oss_layer, oss.bucket, oss.new_prefix())
    store.append(claim())
    assert store.get(CLUSTER, 1) is not None
    assert len(oss_layer.seen) >= 6
    for seen in oss_layer.seen:
        assert seen.headers["x-oss-security-token"] == TOKEN
        assert seen.headers["authorization"].startswith(f"OSS4-HMAC-SHA256 Credential={KEY_ID}/")
        assert seen.code not in ("SignatureDoesNotMatch", "InvalidSecurityToken")
    assert TOKEN not in repr(oss_layer.seen) and TOKEN not in repr(store.client)


def test_a_wrong_secret_or_token_is_a_store_error_that_shows_neither(
    oss: OSS, oss_layer: OSSLayer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_secret = Credentials(KEY_ID, Secret("not-the-secret-never-printed"), Secret(TOKEN))
    with pytest.raises(StoreError) as err:
        store_at(oss_layer, oss.bucket, "p", credentials=wrong_secret)
    text = str(err.value)
    assert "SignatureDoesNotMatch (HTTP 403)" in text and "\n" not in text
    # OSS's 403 body carries what it signed, the token included: none of it may leak.
    raw = httpx.get(
        f"{oss_layer.url}/{oss.bucket}/?versioning",
        auth=OssV4Auth(wrong_secret, oss_layer.region, oss.bucket, None),
    )
    assert raw.status_code == 403 and TOKEN in raw.text
    wrong_token = Credentials(KEY_ID, Secret(SECRET), Secret("stale-token-never-printed"))
    with pytest.raises(StoreError) as err2:
        store_at(oss_layer, oss.bucket, "p", credentials=wrong_token)
    assert "InvalidSecurityToken (HTTP 403)" in str(err2.value)
    everything = f"{text} {err2.value} {caplog.text}"
    for secret in (SECRET, TOKEN, "not-the-secret-never-printed", "stale-token-never-printed"):
        assert secret not in everything


def test_credentials_without_a_token_are_signed_without_one(oss: OSS, oss_layer: OSSLayer) -> None:
    oss_layer.accounts["LTAIlongTermKey00002"] = ("long-term-secret-value", None)
    creds = Credentials("LTAIlongTermKey00002", Secret("long-term-secret-value"))
    store = store_at(oss_layer, oss.bucket, oss.new_prefix(), credentials=creds)
    store.append(claim())
    assert all("x-oss-security-token" not in s.headers for s in oss_layer.seen)
    assert all(s.status < 300 or s.code == "FileAlreadyExists" for s in oss_layer.seen)


def test_unreachable_endpoint_is_a_quick_store_error_without_secrets() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(StoreError) as err:
        OSSStore(
            "edgescaler-bucket",
            "pre/fix",
            credentials=credentials(),
            endpoint=endpoint,
            region="cn-hangzhou",
        )
    elapsed = time.monotonic() - started
    message = str(err.value)
    assert "oss://edgescaler-bucket/pre/fix" in message and "ConnectError" in message
    assert "\n" not in message and SECRET not in message and TOKEN not in message
    assert elapsed < 10  # three quick attempts, no long timeouts
    store = OSSStore(
        "edgescaler-bucket",
        "p",
        credentials=credentials(),
        endpoint=endpoint,
        region="cn-hangzhou",
        probe=False,
    )
    with pytest.raises(StoreError, match="read activities/"):
        store.get(CLUSTER, 1)


# -- endpoint, region, settings, open_store ---------------------------------------------------


def test_region_and_endpoint_resolution() -> None:
    assert endpoint_region("https://oss-cn-hangzhou-internal.aliyuncs.com") == "cn-hangzhou"
    assert endpoint_region("https://oss-ap-southeast-1.aliyuncs.com") == "ap-southeast-1"
    assert endpoint_region("http://127.0.0.1:9000") is None
    assert endpoint_region("https://oss-accelerate.aliyuncs.com") is None
    assert default_endpoint("cn-beijing") == "https://oss-cn-beijing-internal.aliyuncs.com"
    # The endpoint's own region wins: a signature for any other region could never match.
    assert resolve_region("https://oss-cn-beijing.aliyuncs.com", "cn-hangzhou") == "cn-beijing"
    assert resolve_region("http://127.0.0.1:9000", "cn-shanghai") == "cn-shanghai"
    assert resolve_region(None, "cn-shanghai") == "cn-shanghai"
    with pytest.raises(ConfigError, match="EDGESCALER_OSS_REGION"):
        resolve_region("http://127.0.0.1:9000", None)
    with pytest.raises(ConfigError, match="invalid region"):
        resolve_region(None, "Hangzhou!")


def test_default_endpoint_is_the_regions_internal_one_virtual_hosted() -> None:
    store = OSSStore(
        "edgescaler-state", "prod", credentials=credentials(), region="cn-beijing", probe=False
    )
    assert store.endpoint == "https://oss-cn-beijing-internal.aliyuncs.com"
    assert store.client.url("prod/x") == (
        "https://edgescaler-state.oss-cn-beijing-internal.aliyuncs.com/prod/x"
    )
    assert store.describe() == "oss://edgescaler-state/prod (oss-cn-beijing-internal.aliyuncs.com)"


@pytest.mark.parametrize("bucket", ["A-Upper", "ab", "-lead", "has_underscore", "x" * 64])
def test_invalid_bucket_names_are_config_errors(bucket: str) -> None:
    with pytest.raises(ConfigError, match="invalid bucket name"):
        OSSStore(bucket, "p", credentials=credentials(), region="cn-beijing", probe=False)


def test_settings_oss_region_from_edgescaler_else_fc() -> None:
    base = {"EDGESCALER_STORE": "oss://b-1/p"}
    assert Settings.from_env(base).oss_region is None
    assert Settings.from_env({**base, "FC_REGION": "cn-shenzhen"}).oss_region == "cn-shenzhen"
    both = {**base, "FC_REGION": "cn-shenzhen", "EDGESCALER_OSS_REGION": "cn-beijing"}
    assert Settings.from_env(both).oss_region == "cn-beijing"
    url = {**base, "EDGESCALER_OSS_ENDPOINT": "http://127.0.0.1:9000/"}
    assert Settings.from_env(url).oss_endpoint == "http://127.0.0.1:9000"
    with pytest.raises(ConfigError, match="EDGESCALER_OSS_ENDPOINT"):
        Settings.from_env({**base, "EDGESCALER_OSS_ENDPOINT": "oss-cn-beijing.aliyuncs.com"})


def test_open_store_oss_round_trip(oss: OSS) -> None:
    prefix = oss.new_prefix()
    url = f"oss://{oss.bucket}/{prefix}"
    kw = {"oss_endpoint": oss.url, "oss_region": oss.region, "credentials": credentials()}
    store = open_store(url, **kw)  # type: ignore[arg-type]
    assert isinstance(store, OSSStore)
    store.append(claim())
    assert store.claim_event("timer:t:2026-11-27T08:00:00Z", T0)
    again = open_store(url + "/", **kw)  # type: ignore[arg-type]
    assert again.get(CLUSTER, 1) == claim()
    assert not again.claim_event("timer:t:2026-11-27T08:00:00Z", T0)
    assert oss.keys(prefix)[0] == f"{prefix}/{activity_key(CLUSTER, 1)}"


@pytest.mark.parametrize("url", ["oss://", "oss:///prefix", "oss://bucket/p?region=x"])
def test_open_store_rejects_bad_oss_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="oss://bucket/prefix"):
        open_store(url, credentials=credentials(), oss_region="cn-beijing")


def test_open_store_oss_needs_credentials() -> None:
    with pytest.raises(ConfigError, match="ALIBABA_CLOUD_ACCESS_KEY_ID"):
        open_store("oss://b-1/p", oss_region="cn-beijing")
    with pytest.raises(ConfigError, match=r"oss://bucket/prefix"):
        open_store("redis://x")


def test_the_handler_signs_the_oss_store_with_fc_context_or_env_credentials(
    oss: OSS, tmp_path: Path
) -> None:
    """Runtime.open_store: FC's context credentials first, else ALIBABA_CLOUD_* (the store
    itself reads no environment)."""
    from edgescaler.runtime import Runtime

    env = {
        "EDGESCALER_STORE": f"oss://{oss.bucket}/{oss.new_prefix()}",
        "EDGESCALER_OSS_ENDPOINT": oss.url,
        "FC_REGION": oss.region,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
        "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN,
    }
    settings = Settings.from_env(env)
    from_env = Runtime(settings, env, None, lambda: T0).open_store()
    assert from_env.get(CLUSTER, 1) is None

    class Context:
        class credentials:
            access_key_id = KEY_ID
            access_key_secret = SECRET
            security_token = TOKEN

    no_env = {k: v for k, v in env.items() if not k.startswith("ALIBABA_CLOUD_")}
    from_context = Runtime(Settings.from_env(no_env), no_env, Context(), lambda: T0).open_store()
    assert from_context.get(CLUSTER, 1) is None
    with pytest.raises(ConfigError, match="no credentials"):
        Runtime(Settings.from_env(no_env), no_env, None, lambda: T0).open_store()


# -- imports ----------------------------------------------------------------------------------


def test_the_oss_store_is_imported_only_when_used_and_pulls_no_sdk() -> None:
    code = (
        "import sys, edgescaler.store, edgescaler.handler\n"
        "print('before', 'edgescaler.store.oss' in sys.modules,\n"
        "      'edgescaler.cloud.oss' in sys.modules)\n"
        "import edgescaler.store.oss\n"
        "heavy = ('boto3', 'botocore', 'alibabacloud_oss_v2', 'requests', 'Crypto')\n"
        "print('after', sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split("\n")[:2] == ["before False False", "after []"]


# -- the client's answers and retries, with httpx's MockTransport -----------------------------


def mock_client(answers: list[httpx.Response | Exception]) -> tuple[OSSClient, list[str]]:
    """An OSSClient whose transport plays ``answers`` in order; the methods sent are recorded."""
    sent: list[str] = []

    def app(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    http = httpx.Client(transport=httpx.MockTransport(app))
    client = OSSClient(
        "http://oss.test", "b-1", "cn-hangzhou", credentials(), http=http, sleep=lambda s: None
    )
    return client, sent


def test_server_errors_and_dropped_connections_are_retried_three_times_in_all() -> None:
    client, sent = mock_client([httpx.Response(503), httpx.Response(200, content=b"ok")])
    assert client.get_object("k") == b"ok" and sent == ["GET", "GET"]
    refused = httpx.ConnectError("refused")
    client, sent = mock_client([refused, refused, refused])
    with pytest.raises(OSSFailure) as err:
        client.get_object("k")
    assert (err.value.code, err.value.status, sent) == ("ConnectError", None, ["GET"] * 3)
    assert not err.value.maybe_applied  # never reached the server


def test_client_errors_are_not_retried_and_read_from_the_xml() -> None:
    body = (
        b"<Error><Code>FileImmutable</Code><Message>immutable</Message>"
        b"<RequestId>RID1</RequestId><EC>0026-00000009</EC></Error>"
    )
    client, sent = mock_client([httpx.Response(409, content=body)])
    with pytest.raises(OSSFailure) as err:
        client.put_object("k", b"{}", forbid_overwrite=True)
    assert sent == ["PUT"]
    assert (
        str(err.value) == "FileImmutable (HTTP 409): immutable (request id RID1, EC 0026-00000009)"
    )


def test_a_409_without_a_readable_code_is_a_store_error() -> None:
    client, _ = mock_client([httpx.Response(409, content=b"<html>busy</html>")])
    store = OSSStore(
        "b-1",
        "p",
        credentials=credentials(),
        endpoint="http://oss.test",
        region="cn-hangzhou",
        probe=False,
    )
    store.client = client
    with pytest.raises(StoreError) as err:
        store.append(claim())
    assert not isinstance(err.value, ConflictError) and "HTTP409 (HTTP 409)" in str(err.value)


def test_a_timeout_after_sending_marks_the_write_as_maybe_applied() -> None:
    exists = (
        b"<Error><Code>FileAlreadyExists</Code><Message>exists</Message>"
        b"<EC>0026-00000002</EC></Error>"
    )
    client, sent = mock_client([httpx.ReadTimeout("slow"), httpx.Response(409, content=exists)])
    with pytest.raises(OSSFailure) as err:
        client.put_object("k", b"{}", forbid_overwrite=True)
    assert sent == ["PUT", "PUT"]
    assert (err.value.code, err.value.maybe_applied) == ("FileAlreadyExists", True)
