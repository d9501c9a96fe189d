"""Which OSS client should the function ship? Prints the numbers behind README "The store".

    .venv/bin/python -m tests.bench.oss_clients [--runs 7] [--out /tmp/oss-bench]

Three candidates, each timed from what the FC zip would hold (cp310 manylinux wheels, unpacked,
run by CPython 3.10 with ``-S``: nothing but the package on ``sys.path``):

  a  botocore (the S3 store's client) against OSS's S3-compatible endpoint, with
     ``x-oss-forbid-overwrite: true`` added by an event hook: one backend for S3, MinIO and OSS
  b  the official ``alibabacloud-oss-v2`` SDK, ``PutObjectRequest(forbid_overwrite=True)``
  c  edgescaler's own client (``edgescaler.cloud.oss``: httpx + OSS signature V4)

Measured per candidate: cold import (``-X importtime`` cumulative of the top module, and the
median wall time of ``python -c 'import …'`` minus an empty interpreter), the import on top of
what the function has already loaded when the store opens (``edgescaler.handler``, httpx,
requests), the time from interpreter start to the first create-only write answered (import +
client + one PUT) against the local OSS layer (tests/support/oss.py over moto; it checks the OSS
V4 signatures of b and c with the SDK's signer), and the bytes the candidate adds to the zip.
Each run also writes the same key again and prints the error code it got back, to show the
candidate can tell a lost race. Numbers, not asserts: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgescaler import package
from tests.support.oss import KEY_ID, REGION, SECRET, TOKEN, OSSLayer
from tests.support.s3 import FAKE_KEY_ID, FAKE_SECRET, MotoS3Server, make_client

REPO = Path(__file__).resolve().parents[2]
SDK_REQUIREMENT = "alibabacloud-oss-v2>=1.4,<2"

PRELUDE = "import sys, time, json\nt0 = time.perf_counter()\nsys.path.insert(0, sys.argv[1])\n"
ARGS = "EP, BUCKET, KEY = sys.argv[2], sys.argv[3], sys.argv[4]\n"

CANDIDATES: dict[str, dict[str, str]] = {
    "a": {
        "label": "botocore, S3 endpoint + header",
        "package": "s3",
        "module": "botocore.session",
        "imports": "import botocore.session\nfrom botocore.config import Config\n",
        "write": f"""
session = botocore.session.get_session()
client = session.create_client(
    "s3", region_name="{REGION}", endpoint_url=EP,
    aws_access_key_id="{KEY_ID}", aws_secret_access_key="{SECRET}", aws_session_token="{TOKEN}",
    config=Config(signature_version="s3v4", s3={{"addressing_style": "path"}},
                  request_checksum_calculation="when_required",
                  response_checksum_validation="when_required",
                  retries={{"max_attempts": 2, "mode": "standard"}}),
)
def forbid(request, **kwargs):
    request.headers["x-oss-forbid-overwrite"] = "true"
client.meta.events.register("before-sign.s3.PutObject", forbid)
client.put_object(Bucket=BUCKET, Key=KEY, Body=b"{{}}")
""",
        "again": """
from botocore.exceptions import ClientError
try:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=b"{}")
    code = "none (overwritten!)"
except ClientError as exc:
    code = exc.response["Error"]["Code"]
""",
    },
    "b": {
        "label": "alibabacloud-oss-v2 (official SDK)",
        "package": "sdk",
        "module": "alibabacloud_oss_v2",
        "imports": "import alibabacloud_oss_v2 as oss\n",
        "write": f"""
cfg = oss.config.load_default()
cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(
    "{KEY_ID}", "{SECRET}", "{TOKEN}")
cfg.region = "{REGION}"
cfg.endpoint = EP
cfg.retry_max_attempts = 3
client = oss.Client(cfg)
client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=KEY, body=b"{{}}",
                                       forbid_overwrite=True))
""",
        "again": """
try:
    client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=KEY, body=b"{}",
                                           forbid_overwrite=True))
    code = "none (overwritten!)"
except oss.exceptions.OperationError as exc:
    code = exc.unwrap().code
""",
    },
    "c": {
        "label": "own client (httpx + OSS V4)",
        "package": "oss",
        "module": "edgescaler.store.oss",
        "imports": "import edgescaler.store.oss\n",
        "write": f"""
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.oss import OSSClient, OSSFailure
from edgescaler.sensitive import Secret
client = OSSClient(EP, BUCKET, "{REGION}", Credentials("{KEY_ID}", Secret("{SECRET}"),
                                                      Secret("{TOKEN}")))
client.put_object(KEY, b"{{}}", forbid_overwrite=True)
""",
        "again": """
try:
    client.put_object(KEY, b"{}", forbid_overwrite=True)
    code = "none (overwritten!)"
except OSSFailure as exc:
    code = exc.code
""",
    },
}


def python310() -> str:
    for candidate in sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10"))
    ):
        return candidate
    found = shutil.which("python3.10")
    if not found:
        sys.exit("needs a CPython 3.10 (FC's runtime) to time the packaged candidates")
    return found


def build(out: Path) -> dict[str, Path]:
    """Zips: oss (base: what c adds is its own modules), s3 (pruned botocore), sdk (base +
    alibabacloud-oss-v2), s3-unpruned (the old ``--with-s3``: boto3 with every model)."""
    source, policies = REPO / "functions" / "scaler", REPO / "policies"
    zips = {
        "oss": package.build(source=source, policies=policies, out=out / "oss", store="oss"),
        "s3": package.build(source=source, policies=policies, out=out / "s3", store="s3"),
        "sdk": package.build(
            source=source,
            policies=policies,
            out=out / "sdk",
            fetch=lambda reqs, dest: package.download_wheels([*reqs, SDK_REQUIREMENT], dest),
        ),
    }
    prune = package.prune_botocore_data
    package.prune_botocore_data = lambda stage: None  # type: ignore[assignment]
    try:
        zips["s3-unpruned"] = package.build(
            source=source,
            policies=policies,
            out=out / "s3-unpruned",
            fetch=lambda reqs, dest: package.download_wheels([*reqs, "boto3>=1.34,<2"], dest),
        )
    finally:
        package.prune_botocore_data = prune  # type: ignore[assignment]
    return zips


def own_bytes(zip_path: Path) -> int:
    """Compressed bytes of edgescaler's OSS modules in the zip (what candidate c adds)."""
    mine = ("edgescaler/cloud/oss.py", "edgescaler/cloud/oss_signing.py", "edgescaler/store/oss.py")
    with zipfile.ZipFile(zip_path) as zf:
        return sum(zf.getinfo(name).compress_size for name in mine)


def run(py: str, code: str, args: Sequence[str], *extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "NO_PROXY": "127.0.0.1,localhost"}
    return subprocess.run(
        [py, "-S", *extra, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )


def wall(py: str, code: str, args: Sequence[str], runs: int) -> float:
    import time

    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = run(py, code, args)
        samples.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-1500:])
    return statistics.median(samples)


def importtime(py: str, directory: str, module: str) -> float:
    proc = run(
        py,
        f"import sys\nsys.path.insert(0, sys.argv[1])\nimport {module}\n",
        [directory],
        "-X",
        "importtime",
    )
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1e6
    raise RuntimeError(f"{module} not in -X importtime output: {proc.stderr[-500:]}")


def measure(
    py: str, name: str, directory: str, endpoint: str, bucket: str, runs: int
) -> dict[str, Any]:
    spec = CANDIDATES[name]
    empty = wall(py, PRELUDE, [directory], runs)
    cold = wall(py, PRELUDE + spec["imports"], [directory], runs) - empty
    warm_prelude = (
        PRELUDE + "import edgescaler.handler, httpx, requests\nt0 = time.perf_counter()\n"
    )
    marginal_code = warm_prelude + spec["imports"] + "print(time.perf_counter() - t0)\n"
    marginal = statistics.median(
        float(run(py, marginal_code, [directory]).stdout) for _ in range(runs)
    )
    write_code = (
        PRELUDE
        + ARGS
        + spec["imports"]
        + "t1 = time.perf_counter()\n"
        + spec["write"]
        + "t2 = time.perf_counter()\n"
        + spec["again"]
        + "print(json.dumps({'import': t1 - t0, 'first_write': t2 - t0, 'client_and_put': t2 - t1,"
        " 'second_write': code}))\n"
    )
    results = []
    for i in range(runs):
        proc = run(py, write_code, [directory, endpoint, bucket, f"bench/{name}/{i}"])
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: {proc.stderr[-2000:]}")
        results.append(json.loads(proc.stdout))
    return {
        "importtime": importtime(py, directory, spec["module"]),
        "cold_import": cold,
        "marginal_import": marginal,
        "first_write": statistics.median(r["first_write"] for r in results),
        "client_and_put": statistics.median(r["client_and_put"] for r in results),
        "second_write": sorted({r["second_write"] for r in results}),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", default=None, help="where to build the zips (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    os.environ.update({"AWS_ACCESS_KEY_ID": FAKE_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET})
    py = python310()
    out = Path(args.out or tempfile.mkdtemp(prefix="oss-bench-"))
    zips = build(out)
    sizes = {k: v.stat().st_size for k, v in zips.items()}
    base = sizes["oss"] - own_bytes(zips["oss"])
    added = {"a": sizes["s3"] - base, "b": sizes["sdk"] - base, "c": own_bytes(zips["oss"])}
    package_of = {"a": "s3", "b": "sdk", "c": "oss"}

    moto = MotoS3Server()
    layer = OSSLayer(moto.endpoint, {KEY_ID: (SECRET, TOKEN)})
    try:
        bucket = "edgescaler-bench"
        make_client(moto.endpoint).create_bucket(Bucket=bucket)
        rows = {}
        for name in ("c", "b", "a"):
            layer.check_signatures = name != "a"  # botocore signs AWS SigV4, not OSS V4
            directory = str(zips[package_of[name]].parent / "scaler")
            rows[name] = measure(py, name, directory, layer.url, bucket, args.runs)
        bad = [s for s in layer.seen if s.code in ("SignatureDoesNotMatch", "InvalidSecurityToken")]
        assert not bad, bad
    finally:
        layer.stop()
        moto.stop()

    print(f"python {py}; {args.runs} runs each, medians; zips in {out}")
    print(
        f"zip sizes: oss (base) {sizes['oss']:,} B; s3 pruned {sizes['s3']:,} B; "
        f"s3 unpruned (old --with-s3) {sizes['s3-unpruned']:,} B; oss+SDK {sizes['sdk']:,} B"
    )
    header = (
        f"{'':2} {'candidate':36} {'importtime':>10} {'cold import':>11} {'in function':>11} "
        f"{'first write':>11} {'client+PUT':>10} {'zip +bytes':>11} {'zip total':>10}  second write"
    )
    print(header)
    for name in ("a", "b", "c"):
        r = rows[name]
        total = sizes[package_of[name]]
        label = CANDIDATES[name]["label"]
        times = (
            f"{r['importtime']:>9.3f}s {r['cold_import']:>10.3f}s {r['marginal_import']:>10.3f}s "
            f"{r['first_write']:>10.3f}s {r['client_and_put']:>9.3f}s"
        )
        sizes_text = f"{added[name]:>11,} {total / 1e6:>8.2f}MB"
        print(f"{name:2} {label:36} {times} {sizes_text}  {','.join(r['second_write'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
