"""Secrets on error paths: an API that echoes the request, a malformed STS token, debug logging
of a third-party client. Nothing of a secret — not even an 8-character piece — may reach the
report, the logs or the store."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.s3 import MotoS3
from tests.support.world import KEY_SECRET, PASSWORD, build_world

RUN = {"policies": ["edge-a"]}
TOKEN = "CAIS-sts-token-0123456789-abcdefghijklmnop"


def pieces(secret: str, shortest: int = 8) -> list[str]:
    return [
        secret[i : i + k]
        for k in range(shortest, len(secret) + 1)
        for i in range(len(secret) - k + 1)
    ]


def assert_no_piece(text: str, *secrets: str) -> None:
    for secret in secrets:
        for piece in pieces(secret):
            assert piece not in text, f"{piece!r} of a secret leaked"


def test_an_api_echoing_the_request_leaks_nothing_anywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with build_world(tmp_path) as w:
        w.emulator.inject("ScaleOutCluster", "echo")
        report = w.run(RUN)
        (out,) = report["outcomes"]
        assert out["outcome"] == "error" and "HTTP 400" in out["reason"], out
        assert "the gateway could not forward" in out["reason"]  # the echo is quoted...
        assert "***" in out["reason"]  # ...with the password masked
        stored = w.stored_text()
    assert "rejected" in stored
    for text in (str(report), caplog.text, stored):
        assert_no_piece(text, PASSWORD, KEY_SECRET)


@pytest.mark.parametrize("bad", [TOKEN[:20] + "\n" + TOKEN[20:], TOKEN + "\x00", TOKEN + " é"])
def test_a_malformed_sts_token_is_refused_by_name_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: str
) -> None:
    with build_world(tmp_path, extra_env={"ALIBABA_CLOUD_SECURITY_TOKEN": bad}) as w:
        report = w.run(RUN)
        (out,) = report["outcomes"]
        assert out["outcome"] == "error"
        assert out["reason"].startswith("ALIBABA_CLOUD_SECURITY_TOKEN: contains a space")
        assert w.emulator.state()["calls"]["DescribeClusterNodes"] == 0
    assert_no_piece(str(report) + caplog.text, TOKEN)


def _history(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgescaler.cli", "-v", "history"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_verbose_cli_with_the_s3_store_prints_no_security_token(moto_s3: MotoS3) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_SESSION"))
    }
    env.update(
        {
            "EDGESCALER_STORE": f"s3://{moto_s3.bucket}/{moto_s3.new_prefix()}",
            "EDGESCALER_S3_ENDPOINT": moto_s3.endpoint,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.verboseKeyId",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "verbose-key-secret-0123456789",
            "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN,
        }
    )
    done = _history(env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no activities recorded" in done.stdout
    assert_no_piece(done.stdout + done.stderr, TOKEN, "verbose-key-secret-0123456789")
    assert "DEBUG botocore" not in done.stderr  # edgescaler's -v, never botocore's headers

    # The control: the same store opened with plain DEBUG logging prints the token, so the
    # assertion above is about our logging setup, not about botocore being quiet anyway.
    control = subprocess.run(
        [
            sys.executable,
            "-c",
            "import logging, os, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr);"
            "from edgescaler.store import open_store;"
            "from edgescaler.cloud.credentials import from_env;"
            "open_store(os.environ['EDGESCALER_STORE'], "
            "s3_endpoint=os.environ['EDGESCALER_S3_ENDPOINT'], credentials=from_env(os.environ))"
            ".history()",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert control.returncode == 0, control.stderr[-2000:]
    assert TOKEN in control.stderr and "DEBUG:botocore" in control.stderr
