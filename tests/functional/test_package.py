"""`edgescaler package`: the FC code package is built from cp310 manylinux wheels and runs.

Downloads wheels from the package index (CI has it). The run test executes the packaged
handler under a real Python 3.10 with ``-S`` (no site-packages: only the package's own files)
against the emulator.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgescaler import package
from edgescaler.emulator import (
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_CLUSTER_ID,
    Emulator,
    EmulatorConfig,
    ScenarioStep,
)
from edgescaler.errors import ConfigError
from tests.support.kms import FakeKMS
from tests.support.loopback import serve

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "functions" / "scaler"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The production package (oss store), with its .pyc when this machine has a CPython 3.10
    to compile them (the tests that need them skip otherwise)."""
    out = tmp_path_factory.mktemp("pkg")
    bytecode = package.find_python310() is not None
    return package.build(source=SOURCE, policies=REPO / "policies", out=out, bytecode=bytecode)


def test_the_zip_holds_the_function_its_policies_and_cp310_wheels(built: Path) -> None:
    with zipfile.ZipFile(built) as zf:
        names = set(zf.namelist())
    assert {"index.py", "edgescaler/__init__.py", "edgescaler/handler.py"} <= names
    assert "policies/beijing-edge.yaml" in names
    compiled = [n for n in names if n.endswith(".so")]
    assert any(
        n.startswith("pydantic_core/") and "cpython-310-x86_64-linux-gnu" in n for n in compiled
    )
    assert all("cpython-311" not in n for n in compiled)
    assert not any(n.startswith(("fc2/", "tests/", "boto3/")) for n in names)
    assert all(n.endswith(".cpython-310.pyc") for n in names if n.endswith(".pyc"))
    # pip's uninstall lists stay out; the metadata importlib.metadata reads stays in.
    assert not any(n.endswith(".dist-info/RECORD") for n in names)
    assert any(n.startswith("pydantic-") and n.endswith(".dist-info/METADATA") for n in names)


# The .pyc header (PEP 552): CPython 3.10's magic number, then the flags: 0b01 is hash-based and
# unchecked (the source is never read to check it), then the source's SipHash keyed with the
# magic number.
MAGIC_310 = (3439).to_bytes(2, "little") + b"\r\n"
UNCHECKED_HASH = 0b01


def _source_hashes_310(interpreter: str, sources: dict[str, bytes], tmp: Path) -> dict[str, bytes]:
    """importlib's source hash of each source, as CPython 3.10 computes it (the keyed hash is
    the interpreter's own: 3.11 computes another)."""
    for i, data in enumerate(sources.values()):
        (tmp / f"{i}.py").write_bytes(data)
    script = (
        "import sys, importlib.util; "
        "print(' '.join(importlib.util.source_hash(open(f'{sys.argv[1]}/{i}.py', 'rb').read())"
        ".hex() for i in range(int(sys.argv[2]))))"
    )
    out = subprocess.run(
        [interpreter, "-I", "-c", script, str(tmp), str(len(sources))],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(zip(sources, map(bytes.fromhex, out.stdout.split()), strict=True))


def test_the_zip_carries_valid_unchecked_pyc_for_python_310(built: Path, tmp_path: Path) -> None:
    """FC's /code is read-only: Python cannot write .pyc there, so the zip carries them, for
    every product module and every dependency the function can import."""
    interpreter = package.find_python310() or require_python310(" to compile the .pyc")
    with zipfile.ZipFile(built) as zf:
        files = {n: zf.read(n) for n in zf.namelist() if n.endswith((".py", ".pyc"))}
    product = ["index.py"] + [str(f.relative_to(SOURCE)) for f in package.function_files(SOURCE)]
    assert "edgescaler/pipeline.py" in product and "edgescaler/policy.py" in product
    hashes = _source_hashes_310(interpreter, {n: files[n] for n in product}, tmp_path)
    for name in [n for n in files if n.endswith(".py")]:
        folder, _, stem = name.rpartition("/")
        pyc = f"{folder}/__pycache__/{stem[:-3]}.cpython-310.pyc".lstrip("/")
        top = name.split("/")[0].removesuffix(".py")
        if top in package.NOT_COMPILED:
            assert pyc not in files, f"{name}: never imported by the function, yet compiled"
            continue
        assert pyc in files, f"{name} has no .pyc in the zip"
        header = files[pyc][:16]
        assert header[:4] == MAGIC_310, f"{pyc}: not compiled by CPython 3.10"
        if name in product:  # ours: also compiled from exactly the source shipped beside it
            assert int.from_bytes(header[4:8], "little") == UNCHECKED_HASH, pyc
            assert header[8:16] == hashes[name], f"{pyc} is not of {name}"
    assert all(n in files for n in product)


def test_the_zip_carries_its_certifi_bundle_as_a_hashed_ca_directory(built: Path) -> None:
    """One file per certificate of the certifi bundle the zip ships (no more, no fewer), each
    named after its OpenSSL subject hash, each found by OpenSSL's own lookup in that directory."""
    with zipfile.ZipFile(built) as zf:
        bundle = zf.read("certifi/cacert.pem").decode()
        prefix = f"{package.CA_DIR}/"
        files = {n[len(prefix) :]: zf.read(n) for n in zf.namelist() if n.startswith(prefix)}
    certs = {c.strip() for c in bundle.split("-----END CERTIFICATE-----") if "BEGIN" in c}
    assert len(certs) > 100
    assert len(files) == len(certs)
    assert {
        data.decode().split("-----END CERTIFICATE-----")[0].strip() for data in files.values()
    } == {c[c.index("-----BEGIN") :] for c in certs}
    assert all(re.fullmatch(r"[0-9a-f]{8}\.[0-9]+", name) for name in files)
    assert_openssl_finds_each(built.parent / "scaler" / package.CA_DIR)


def assert_openssl_finds_each(folder: Path) -> None:
    """``openssl verify`` of every (self-signed root) file against ``folder`` alone: a root is
    found only when the directory holds it under its hash."""
    names = sorted(p.name for p in folder.iterdir())
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SSL_CERT_FILE": "/nonexistent",
        "SSL_CERT_DIR": "/nonexistent",
    }
    proc = subprocess.run(
        ["openssl", "verify", "-no-CAfile", "-CApath", str(folder), *names],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    ok = [line for line in proc.stdout.splitlines() if line.endswith(": OK")]
    assert proc.returncode == 0 and len(ok) == len(names), proc.stderr[-500:]


def test_a_root_filed_under_the_wrong_hash_is_not_found(built: Path, tmp_path: Path) -> None:
    """The control: the check above does fail when a file's name is not its subject hash."""
    source = built.parent / "scaler" / package.CA_DIR
    first = sorted(source.iterdir())[0]
    wrong = tmp_path / ("0" * 8 if not first.name.startswith("0" * 8) else "f" * 8)
    wrong = wrong.with_suffix(".0")
    shutil.copy(first, wrong)
    with pytest.raises(AssertionError):
        assert_openssl_finds_each(tmp_path)


def test_the_packaged_function_loads_its_cas_lazily(built: Path) -> None:
    """In the package (Python 3.10, ``-S``), the shared context reads its CAs from the hashed
    directory: nothing is loaded up front (the bundle would be 100+ certificates)."""
    interpreter = package.find_python310() or require_python310(" to run the package")
    code = built.parent / "scaler"
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from edgescaler.cloud import tls\n"
        "ctx = tls.context()\n"
        "print(tls.ca_dir() is not None, ctx.cert_store_stats()['x509_ca'], ctx.verify_mode)\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [interpreter, "-S", "-c", probe, str(code)], env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == ["True", "0", "VerifyMode.CERT_REQUIRED"], out.stderr[-500:]


# Workstation tools of the installed package; none of them may reach the function.
TOOLS = (
    "edgescaler/emulator/",
    "edgescaler/demo.py",
    "edgescaler/data/",  # the demo's policy
    "edgescaler/package.py",
    "edgescaler/cli.py",
    "edgescaler/invoke.py",
    "edgescaler/cloud/fc_invoke.py",
    "edgescaler/replay/",
)


def test_the_zip_carries_product_code_only(built: Path) -> None:
    with zipfile.ZipFile(built) as zf:
        ours = {n: zf.read(n) for n in zf.namelist() if n.startswith("edgescaler/")}
    ca_dir = f"{package.CA_DIR}/"
    ours = {n: data for n, data in ours.items() if not n.startswith(ca_dir)}  # data, not code
    assert [n for n in ours if n.startswith(TOOLS)] == []
    sources = {n for n in ours if not n.endswith(".pyc")}
    assert sources == {str(p.relative_to(SOURCE)) for p in package.function_files(SOURCE)}
    # bytecode of product modules only (a tool's .pyc would carry the tool)
    compiled = {n.replace("__pycache__/", "").replace(".cpython-310.pyc", ".py") for n in ours}
    assert compiled <= sources
    # The emulator's built-in fake secret travelled with the emulator module.
    assert [n for n, data in ours.items() if DEFAULT_ACCESS_KEY_SECRET.encode() in data] == []


def copy_source(tmp_path: Path) -> Path:
    """A scratch copy of functions/scaler to add tools or imports to."""
    source = tmp_path / "src"
    shutil.copytree(SOURCE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return source


def no_wheels(reqs: object, dest: Path) -> list[Path]:
    """No dependencies but certifi's CA bundle (the build turns it into the CA directory): a
    wheel of one certificate."""
    import certifi

    first = Path(certifi.where()).read_text().split("-----END CERTIFICATE-----")[0]
    wheel = dest / "certifi-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("certifi/cacert.pem", first + "-----END CERTIFICATE-----\n")
    return [wheel]


def test_a_new_tool_subpackage_stays_out_of_the_zip(tmp_path: Path) -> None:
    source = copy_source(tmp_path)
    (source / "edgescaler" / "newtool").mkdir()
    (source / "edgescaler" / "newtool" / "__init__.py").write_text('"""A new tool."""\n')
    (source / "edgescaler" / "bench.py").write_text("from edgescaler import newtool\n")
    archive = package.build(
        source=source,
        policies=REPO / "policies",
        out=tmp_path / "out",
        fetch=no_wheels,
        bytecode=False,
    )
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    assert "edgescaler/handler.py" in names
    tools = ("edgescaler/newtool/", "edgescaler/bench.py", "edgescaler/replay/")
    assert [n for n in names if n.startswith(tools)] == []


def test_a_module_the_function_imports_must_be_listed(tmp_path: Path) -> None:
    source = copy_source(tmp_path)
    (source / "edgescaler" / "newthing.py").write_text('"""A module nobody listed."""\n')
    handler = source / "edgescaler" / "handler.py"
    # A lazy import inside a function counts as much as one at the top.
    handler.write_text(
        handler.read_text() + "\n\ndef _later() -> None:\n    from edgescaler import newthing\n"
    )
    with pytest.raises(ConfigError, match=r"edgescaler/handler.py imports edgescaler.newthing"):
        package.build(
            source=source,
            policies=REPO / "policies",
            out=tmp_path / "out",
            fetch=lambda reqs, dest: pytest.fail("must not download for a bad module list"),
        )


def test_a_listed_module_must_exist(tmp_path: Path) -> None:
    source = copy_source(tmp_path)
    (source / "edgescaler" / "cloud" / "kms.py").unlink()
    with pytest.raises(ConfigError, match=r"names edgescaler.cloud.kms, which does not exist"):
        package.build(
            source=source, policies=REPO / "policies", out=tmp_path / "out", fetch=no_wheels
        )


def test_the_bytecode_needs_a_cpython_310(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--python: .* is not a working CPython 3.10"):
        package.build(
            source=SOURCE,
            policies=REPO / "policies",
            out=tmp_path / "out",
            fetch=no_wheels,
            python=shutil.which("false") or "/bin/false",
        )


def test_requirements_leave_out_the_fc_sdk() -> None:
    reqs = package.function_requirements()
    assert any(r.startswith("httpx") for r in reqs) and any(r.startswith("pydantic") for r in reqs)
    assert not any(r.startswith("aliyun-fc2") for r in reqs)


def test_requirements_per_store() -> None:
    base = package.function_requirements("sqlite")
    # The OSS client is edgescaler's own (httpx): the production store adds nothing.
    assert package.function_requirements("oss") == base
    s3 = package.function_requirements("s3")
    assert s3[: len(base)] == base and s3[len(base) :] == ["botocore>=1.34,<2"]
    assert not any(r.startswith(("boto3", "alibabacloud")) for r in s3)
    from edgescaler.errors import ConfigError

    with pytest.raises(ConfigError, match="--store"):
        package.function_requirements("redis")


def test_botocore_data_is_pruned_to_what_the_s3_client_loads(tmp_path: Path) -> None:
    data = tmp_path / "botocore" / "data"
    for d in ("s3/2006-03-01", "ec2/2016-11-15", "sts/2011-06-15"):
        (data / d).mkdir(parents=True)
        (data / d / "service-2.json.gz").write_bytes(b"x")
    for f in ("endpoints.json", "partitions.json", "_retry.json"):
        (data / f).write_text("{}")
    package.prune_botocore_data(tmp_path)
    assert sorted(p.name for p in data.iterdir()) == [
        "_retry.json",
        "endpoints.json",
        "partitions.json",
        "s3",
    ]
    assert (data / "s3" / "2006-03-01" / "service-2.json.gz").is_file()
    package.prune_botocore_data(tmp_path / "absent")  # no botocore: nothing to do


def test_an_invalid_policy_stops_the_build(tmp_path: Path) -> None:
    bad = tmp_path / "policies"
    bad.mkdir()
    (bad / "x.yaml").write_text("name: x\n")
    from edgescaler.errors import PolicyError

    with pytest.raises(PolicyError):
        package.build(
            source=REPO / "functions" / "scaler",
            policies=bad,
            out=tmp_path / "out",
            fetch=lambda reqs, dest: pytest.fail("must not download for an invalid policy"),
        )


def require_python310(why: str = "") -> str:
    """The 3.10 interpreter, or skip the test — but fail under CI, where it must exist (the
    function runs on 3.10: these tests are the proof)."""
    interpreter = python310()
    if interpreter is None:
        message = f"no Python 3.10 interpreter on this machine{why}"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {message}", pytrace=False)
        pytest.skip(message)
    return interpreter


def python310() -> str | None:
    """A working CPython 3.10 (pyenv shims may exist without the version being active)."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))
    candidates += [p for p in (shutil.which("python3.10"),) if p]
    for candidate in candidates:
        check = subprocess.run(
            [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 10)"],
            capture_output=True,
        )
        if check.returncode == 0:
            return candidate
    return None


@pytest.fixture
def emulator_for_example_policy() -> Iterator[Emulator]:
    queries = {
        'sum(rate(node_cpu_seconds_total{mode!="idle",edge="true"}[2m]))': 9.0,
        'sum(kube_pod_status_phase{phase="Pending"})': 0.0,
        'max(timestamp(node_cpu_seconds_total{mode="idle",edge="true"}))': time.time(),
    }
    with Emulator(EmulatorConfig(scenario=[ScenarioStep(0.0, queries)])).start() as emu:
        yield emu


def test_the_packaged_handler_runs_on_python_310(
    built: Path, tmp_path: Path, emulator_for_example_policy: Emulator
) -> None:
    interpreter = require_python310()
    code = tmp_path / "code"
    with zipfile.ZipFile(built) as zf:
        zf.extractall(code)
    emu = emulator_for_example_policy
    config = EmulatorConfig()
    # The example policy reads its password from KMS: a fake KMS that checks every signature.
    kms = FakeKMS(keys={config.access_key_id: config.access_key_secret}, region="cn-beijing")
    kms.put("edgescaler/ens-login-password", "Packaged-Passw0rd")
    with serve(kms) as kms_url:
        proc = _run_packaged_handler(interpreter, code, emu, config, kms_url, tmp_path)
    assert kms.fetches("edgescaler/ens-login-password") == 1
    assert all(not c.problems for c in kms.calls)
    assert proc.returncode == 0, proc.stderr[-2000:]
    *log_lines, last = proc.stdout.splitlines()  # the function's JSON log lines, then the report
    logged = {json.loads(line).get("policy"): json.loads(line) for line in log_lines}
    assert logged["beijing-edge"]["outcome"] == "scaled"
    outcomes = json.loads(last)["outcomes"]
    # every example policy runs; beijing-edge's cluster is the emulator's
    assert {o["policy"] for o in outcomes} == {"beijing-edge", "edge-predictive"}
    (o,) = [o for o in outcomes if o["policy"] == "beijing-edge"]
    assert o["cluster_id"] == DEFAULT_CLUSTER_ID
    # ceil(9.0 / 1.4) = 7 desired, 2 current: +5 (max_step 5)
    assert (o["outcome"], o["add"]) == ("scaled", 5), o["reason"]
    assert len(emu.scale_out_calls()) == 1
    assert "Packaged-Passw0rd" not in proc.stdout + proc.stderr
    # Run as FC runs it (-S, /code read-only): every module the run imported from the package
    # came from the zip's .pyc, none was compiled from its source (python -v tells which).
    from_source = [
        ln for ln in proc.stderr.splitlines() if ln.startswith(f"# code object from {code}/")
    ]
    assert from_source == []
    from_pyc = {
        ln.split(" matches ")[1]
        for ln in proc.stderr.splitlines()
        if ln.startswith(f"# {code}/") and " matches " in ln
    }
    for module in (
        "index.py",
        "edgescaler/pipeline.py",
        "edgescaler/policy.py",
        "yaml/__init__.py",
    ):
        assert str(code / module) in from_pyc, module
    assert str(code / "pydantic/main.py") in from_pyc


def _run_packaged_handler(
    interpreter: str,
    code: Path,
    emu: Emulator,
    config: EmulatorConfig,
    kms_url: str,
    tmp_path: Path,
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "EDGESCALER_POLICY_DIR": str(code / "policies"),
        "EDGESCALER_STORE": f"sqlite:///{tmp_path / 'fc.db'}",
        "EDGESCALER_PROMETHEUS_URL": emu.url,
        "EDGESCALER_CS_ENDPOINT": emu.url,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": config.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": config.access_key_secret,
        "EDGESCALER_KMS_ENDPOINT": kms_url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    script = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); import index; "
        "print(json.dumps(index.handler(b'', None)))"
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # FC's /code is read-only
    return subprocess.run(
        [interpreter, "-S", "-v", "-c", script, str(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


# -- the stores from the package, under Python 3.10 ------------------------------------------

STORE_SCRIPT = """
import sys, json
sys.path.insert(0, sys.argv[1])
from datetime import datetime, timezone
from edgescaler.errors import ConflictError
from edgescaler.store import open_store
from edgescaler.activity import Activity, Status
from edgescaler.cloud.credentials import Credentials
from edgescaler.sensitive import Secret
kind, url, endpoint = sys.argv[2], sys.argv[3], sys.argv[4]
if kind == "s3":
    store = open_store(url, s3_endpoint=endpoint)
else:
    creds = Credentials(sys.argv[5], Secret(sys.argv[6]), Secret(sys.argv[7]))
    store = open_store(url, oss_endpoint=endpoint, oss_region=sys.argv[8], credentials=creds)
t = datetime(2026, 11, 27, tzinfo=timezone.utc)
act = Activity(cluster_id="c1", seq=1, policy="p", add=1, status=Status.CLAIMED, created_at=t,
               updated_at=t)
store.append(act)
try:
    store.append(act)
    second = "overwritten"
except ConflictError:
    second = "conflict"
heavy = sorted(m for m in ("boto3", "botocore", "alibabacloud_oss_v2") if m in sys.modules)
print(json.dumps({"seqs": store.seqs("c1"), "second": second, "loaded": heavy,
                  "store": type(store).__name__}))
"""


def run_packaged_store(code: Path, args: list[str], tmp_path: Path) -> dict[str, object]:
    interpreter = require_python310()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "NO_PROXY": "127.0.0.1,localhost",
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
    }
    proc = subprocess.run(
        [interpreter, "-S", "-c", STORE_SCRIPT, str(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out: dict[str, object] = json.loads(proc.stdout)
    return out


def test_the_packaged_oss_store_runs_on_python_310(built: Path, tmp_path: Path, oss: Any) -> None:
    """The default package holds everything the OSS store needs (the layer checks its
    signatures with the official SDK's signer)."""
    from tests.support.oss import KEY_ID, SECRET, TOKEN

    assert built.stat().st_size < 10_000_000  # the production store's zip stays under 10 MB
    code = tmp_path / "code"
    with zipfile.ZipFile(built) as zf:
        zf.extractall(code)
    url = f"oss://{oss.bucket}/{oss.new_prefix()}"
    got = run_packaged_store(
        code, ["oss", url, oss.url, KEY_ID, SECRET, TOKEN, oss.region], tmp_path
    )
    assert got == {"seqs": [1], "second": "conflict", "loaded": [], "store": "OSSStore"}


@pytest.mark.slow  # downloads and builds a second package
def test_the_packaged_s3_store_runs_on_python_310_with_pruned_botocore(
    tmp_path: Path, moto_s3: Any
) -> None:
    archive = package.build(
        source=REPO / "functions" / "scaler",
        policies=REPO / "policies",
        out=tmp_path / "pkg",
        store="s3",
    )
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    services = {
        n.split("/")[2] for n in names if n.startswith("botocore/data/") and n.count("/") > 2
    }
    assert services == {"s3"}
    assert not any(n.startswith(("boto3/", "s3transfer/")) for n in names)
    assert archive.stat().st_size < 10_000_000  # was 23.8 MB with every botocore model
    code = tmp_path / "code"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(code)
    url = f"s3://{moto_s3.bucket}/{moto_s3.new_prefix()}"
    got = run_packaged_store(code, ["s3", url, moto_s3.endpoint], tmp_path)
    assert got == {"seqs": [1], "second": "conflict", "loaded": ["botocore"], "store": "S3Store"}
