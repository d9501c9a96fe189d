"""``edgescaler package``: build the FC code package (a directory and a zip) for Python 3.10.

FC's Python 3.10 runtime is x86_64 Linux, so dependencies come from cp310 manylinux wheels
(``pip download --platform manylinux2014_x86_64 --python-version 3.10 --only-binary=:all:``),
whatever Python and platform build the package. Layout of the result (``CodeUri`` in
``template.yml``)::

    index.py            the FC entry (Handler: index.handler)
    edgescaler/         this package
    policies/*.yaml     the policies to deploy (validated first)
    <dependencies>      unpacked wheels

``aliyun-fc2`` is left out: it is the SDK for deploying and invoking from a workstation, and the
function never imports it. ``--store`` names the store the function will use: ``oss`` (the
production default) and ``sqlite`` need nothing beyond the base requirements (the OSS client is
edgescaler's own, over httpx); ``s3`` adds botocore, with only the data its S3 client loads
(botocore ships the models of ~400 services: 28 of its 30 MB).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from edgescaler import policyfile
from edgescaler.errors import ConfigError

PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.10"
ABI = "cp310"
NOT_IN_FUNCTION = frozenset({"aliyun-fc2"})
# What each store adds to the base requirements. The S3 store imports botocore only (not boto3).
STORE_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "oss": (),
    "sqlite": (),
    "s3": ("botocore>=1.34,<2",),
}
# Under botocore/data: every top-level file (endpoints, partitions, retry and default-config
# data, read when a client is created) and these service directories.
BOTOCORE_SERVICES = frozenset({"s3"})
# 100 MB is the limit for a base64 zip sent through the FC API; larger needs OSS.
API_UPLOAD_LIMIT = 100 * 1000 * 1000
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # reproducible zips: same inputs, same bytes
_SKIP = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache"})


def function_requirements(store: str = "oss") -> list[str]:
    """The runtime requirements of the installed edgescaler, minus what the function never uses,
    plus what ``store`` needs."""
    if store not in STORE_REQUIREMENTS:
        raise ConfigError(f"--store: expected one of {', '.join(sorted(STORE_REQUIREMENTS))}")
    reqs = []
    for req in metadata.requires("edgescaler") or []:
        if "extra ==" in req:
            continue
        name = req.split(";")[0].strip()
        base = name.split("[")[0]
        for sep in "<>=!~ ":
            base = base.split(sep)[0]
        if base.lower() not in NOT_IN_FUNCTION:
            reqs.append(name)
    return reqs + list(STORE_REQUIREMENTS[store])


def prune_botocore_data(stage: Path) -> None:
    """Drop the models of every service but :data:`BOTOCORE_SERVICES` from ``stage``."""
    data = stage / "botocore" / "data"
    if not data.is_dir():
        return
    for entry in data.iterdir():
        if entry.is_dir() and entry.name not in BOTOCORE_SERVICES:
            shutil.rmtree(entry)


def download_wheels(requirements: Sequence[str], dest: Path) -> list[Path]:
    """cp310 manylinux wheels for ``requirements`` and their dependencies."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--dest",
        str(dest),
        "--only-binary=:all:",
        "--platform",
        PLATFORM,
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--abi",
        ABI,
        *requirements,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.splitlines() if "is ignored" not in ln][-3:]
        raise ConfigError("pip download failed: " + " | ".join(tail))
    return sorted(dest.glob("*.whl"))


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(
        src, dst, ignore=lambda _d, names: [n for n in names if n in _SKIP or n.endswith(".pyc")]
    )


def build(
    *,
    source: Path,
    policies: Path,
    out: Path,
    store: str = "oss",
    fetch: Callable[[Sequence[str], Path], list[Path]] = download_wheels,
) -> Path:
    """Build ``out/scaler/`` and ``out/edgescaler-fc.zip``; return the zip's path.

    ``source`` is the FC code directory (``functions/scaler``). The policies are validated
    first: a package is never built around an invalid policy.
    """
    policyfile.load([policies])
    stage = out / "scaler"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="edgescaler-wheels-") as tmp:
        for wheel in fetch(function_requirements(store), Path(tmp)):
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(stage)
    prune_botocore_data(stage)
    shutil.copy2(source / "index.py", stage / "index.py")
    _copy_tree(source / "edgescaler", stage / "edgescaler")
    (stage / "policies").mkdir()
    for f in policyfile.policy_files([policies]):
        shutil.copy2(f, stage / "policies" / f.name)
    archive = out / "edgescaler-fc.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in stage.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(str(path.relative_to(stage)), _FIXED_TIME)
            info.external_attr = (path.stat().st_mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return archive


def main(*, out: str, policies: str, store: str = "oss", say: Callable[[str], None] = print) -> int:
    repo_source = Path(__file__).resolve().parent.parent
    if not (repo_source / "index.py").is_file():
        raise ConfigError(f"{repo_source}/index.py not found: run from a source checkout")
    archive = build(source=repo_source, policies=Path(policies), out=Path(out), store=store)
    size = archive.stat().st_size
    with zipfile.ZipFile(archive) as zf:
        count = len(zf.namelist())
    say(
        f"built {archive} ({size / 1e6:.1f} MB, {count} files, {store} store) for Python "
        f"{PYTHON_VERSION} {PLATFORM}; directory {archive.parent / 'scaler'}"
    )
    if size > API_UPLOAD_LIMIT:
        say("warning: larger than the 100 MB FC API upload limit; upload through OSS")
    return 0
