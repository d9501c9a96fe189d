"""``edgescaler package``: build the FC code package (a directory and a zip) for Python 3.10.

FC's Python 3.10 runtime is x86_64 Linux, so dependencies come from cp310 manylinux wheels
(``pip download --platform manylinux2014_x86_64 --python-version 3.10 --only-binary=:all:``),
whatever Python and platform build the package. Layout of the result (``CodeUri`` in
``template.yml``)::

    index.py            the FC entry (Handler: index.handler)
    edgescaler/         the modules of this package the function runs (FUNCTION_MODULES)
    edgescaler/cloud/cacerts/   certifi's CAs, one file per certificate under its OpenSSL
                        subject hash: loaded lazily at handshake time (write_ca_dir)
    policies/*.yaml     the policies to deploy (validated first)
    <dependencies>      unpacked wheels
    **/__pycache__/*.cpython-310.pyc   bytecode, compiled at build time (below)

FC's ``/code`` is read-only, so Python can never cache the bytecode it compiles there: without
``.pyc`` in the zip every cold start compiles every module it imports (twice as slow as loading
them). They are compiled by a CPython 3.10 (``--python``, else one found on this machine) with
``--invalidation-mode unchecked-hash``: a timestamp ``.pyc`` would be stale at once (the zip
fixes every mtime), a checked-hash one would read and hash every source on every import, and
the zip is immutable — its ``.pyc`` and sources always ship together. The date-parsing
libraries ``prometheus-api-client`` requires but the function never imports
(:data:`NOT_COMPILED`) stay source only: their bytecode would add 0.7 MB to the zip.

The installed package also holds tools that never run in the function and stay out of the zip:
the CLI, the emulator, the demo (and its policy, which names a built-in fake access-key secret),
this packager and ``invoke``.

``aliyun-fc2`` is left out: it is the SDK for deploying and invoking from a workstation, and the
function never imports it. ``--store`` names the store the function will use: ``oss`` (the
production default) and ``sqlite`` need nothing beyond the base requirements (the OSS client is
edgescaler's own, over httpx); ``s3`` adds botocore, with only the data its S3 client loads
(botocore ships the models of ~400 services: 28 of its 30 MB).
"""

from __future__ import annotations

import ast
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from edgescaler import policyfile
from edgescaler.cloud import tls
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
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----", re.S)
_SUBJECT_HASH = re.compile(r"[0-9a-f]{8}")
# The function's hashed CA directory (edgescaler.cloud.tls.CA_DIR), relative to the package root.
CA_DIR = tls.CA_DIR.resolve().relative_to(Path(tls.__file__).resolve().parents[2])
# Top-level modules of the zip that the function never imports: prometheus-api-client's
# date-parsing dependencies (only its range-query helpers, never called, import dateparser).
# Shipped as sources, not compiled. The packaged-handler test checks that a run imports none of
# them (a module compiled from source during a run fails it).
NOT_COMPILED = frozenset(
    {
        "dateparser",
        "dateparser_cli",
        "dateparser_data",
        "dateparser_scripts",
        "dateutil",
        "pytz",
        "regex",
        "six",
        "tzdata",
        "tzlocal",
    }
)

# The modules of the edgescaler package that go into the function: what index.py can import
# (directly or through other modules, at the top or lazily inside a function), plus the KMS
# client that the ``kms_secret`` password reference needs. An allow-list on purpose: the installed
# package also holds workstation tools (the CLI, the emulator, the demo, this packager, ``invoke``,
# and whatever comes next, e.g. ``replay/``), and a new tool must not ride along into the function
# unnoticed. The other way round is checked: :func:`build` refuses to build when index.py can
# import an edgescaler module this list leaves out, or when it names one that does not exist.
FUNCTION_MODULES = frozenset(
    {
        "edgescaler",
        "edgescaler.activity",
        "edgescaler.actuator",
        "edgescaler.callback",
        "edgescaler.codes",
        "edgescaler.deadline",
        "edgescaler.decision",
        "edgescaler.errors",
        "edgescaler.forecast",
        "edgescaler.guard",
        "edgescaler.handler",
        "edgescaler.logs",
        "edgescaler.offline",
        "edgescaler.outside",
        "edgescaler.passwords",
        "edgescaler.pipeline",
        "edgescaler.policy",
        "edgescaler.policyfile",
        "edgescaler.report",
        "edgescaler.runtime",
        "edgescaler.safejson",
        "edgescaler.sensitive",
        "edgescaler.settings",
        "edgescaler.triggers",
        "edgescaler.cloud",
        "edgescaler.cloud.acs",
        "edgescaler.cloud.credentials",
        "edgescaler.cloud.cs",
        "edgescaler.cloud.kms",
        "edgescaler.cloud.model",
        "edgescaler.cloud.oss",
        "edgescaler.cloud.oss_signing",
        "edgescaler.cloud.signing",
        "edgescaler.cloud.tls",
        "edgescaler.metrics",
        "edgescaler.metrics.alarm",
        "edgescaler.metrics.base",
        "edgescaler.metrics.prometheus",
        "edgescaler.metrics.series",
        "edgescaler.store",
        "edgescaler.store.base",
        "edgescaler.store.memory",
        "edgescaler.store.oss",
        "edgescaler.store.s3",
        "edgescaler.store.sqlite",
    }
)


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


def prune_install_records(stage: Path) -> None:
    """Drop every ``*.dist-info/RECORD``: the list of installed files, with their hashes, that
    pip reads to uninstall. Nothing installs into or uninstalls from ``/code``, and nothing the
    function runs reads it (``importlib.metadata``'s entry points and versions come from other
    files); botocore's alone is 74 kB of the zip."""
    for record in stage.glob("*.dist-info/RECORD"):
        record.unlink()


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


def find_python310() -> str | None:
    """A working CPython 3.10: this interpreter, ``python3.10`` on PATH, or a pyenv one."""
    candidates = [sys.executable] if sys.version_info[:2] == (3, 10) else []
    candidates += [p for p in (shutil.which("python3.10"),) if p]
    pattern = os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")
    candidates += sorted(glob.glob(pattern), reverse=True)
    for candidate in candidates:
        if _is_cpython310(candidate):
            return candidate
    return None


def _is_cpython310(python: str) -> bool:
    check = (
        "import sys; sys.exit(not (sys.implementation.name, sys.version_info[:2]) == "
        "('cpython', (3, 10)))"
    )
    try:
        proc = subprocess.run([python, "-I", "-c", check], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def compile_bytecode(stage: Path, python: str) -> None:
    """Compile the stage's modules (all but :data:`NOT_COMPILED`) with ``python`` (CPython
    3.10) into ``__pycache__/*.cpython-310.pyc``, unchecked-hash (see the module docstring)."""
    if not _is_cpython310(python):
        raise ConfigError(f"--python: {python} is not a working CPython 3.10")
    targets = sorted(
        str(entry)
        for entry in stage.iterdir()
        if (entry.is_dir() or entry.suffix == ".py")
        and entry.name.removesuffix(".py") not in NOT_COMPILED
        and entry.name != "policies"
        and not entry.name.endswith((".dist-info", ".data"))
    )
    cmd = [
        python,
        "-I",
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        *targets,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise ConfigError("compiling the .pyc failed: " + " | ".join(tail))


def _module_file(source: Path, module: str) -> Path | None:
    """The file of an edgescaler module under ``source`` (``functions/scaler``), if it exists."""
    base = source.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _edgescaler_imports(source: Path, path: Path) -> set[str]:
    """The edgescaler modules (and packages on the way) that the file at ``path`` imports.

    Read from the source, nothing executed; every import statement counts, also one inside a
    function or under ``TYPE_CHECKING``.
    """
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named.add(node.module)
            named.update(f"{node.module}.{alias.name}" for alias in node.names)
    found: set[str] = set()
    for name in named:
        parts = name.split(".")
        if parts[0] != "edgescaler":
            continue
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            if _module_file(source, prefix) is not None:
                found.add(prefix)
    return found


def function_imports(source: Path) -> dict[str, str]:
    """Every edgescaler module that ``source/index.py`` can import, mapped to the file of one
    module that imports it (for error messages)."""
    entry = source / "index.py"
    reached: dict[str, str] = {}
    todo = [(m, "index.py") for m in sorted(_edgescaler_imports(source, entry))]
    while todo:
        module, importer = todo.pop()
        if module in reached:
            continue
        reached[module] = importer
        path = _module_file(source, module)
        assert path is not None  # _edgescaler_imports only names modules that exist
        here = str(path.relative_to(source))
        todo += [(m, here) for m in sorted(_edgescaler_imports(source, path)) if m not in reached]
    return reached


def function_files(source: Path) -> list[Path]:
    """The files of :data:`FUNCTION_MODULES` under ``source``, after checking the list.

    Raises ConfigError when index.py can import an edgescaler module the list leaves out, or
    when the list names a module that does not exist.
    """
    for module, importer in sorted(function_imports(source).items()):
        if module not in FUNCTION_MODULES:
            raise ConfigError(
                f"{importer} imports {module}, which package.FUNCTION_MODULES leaves out of the "
                "function: add it there if the function needs it"
            )
    files = []
    for module in sorted(FUNCTION_MODULES):
        path = _module_file(source, module)
        if path is None:
            raise ConfigError(f"package.FUNCTION_MODULES names {module}, which does not exist")
        files.append(path)
    return files


def build(
    *,
    source: Path,
    policies: Path,
    out: Path,
    store: str = "oss",
    fetch: Callable[[Sequence[str], Path], list[Path]] = download_wheels,
    python: str | None = None,
    bytecode: bool = True,
) -> Path:
    """Build ``out/scaler/`` and ``out/edgescaler-fc.zip``; return the zip's path.

    ``source`` is the FC code directory (``functions/scaler``). The policies are validated
    first: a package is never built around an invalid policy, nor from a module list that
    does not match what the function imports (:func:`function_files`). ``python``: the CPython
    3.10 that compiles the ``.pyc`` (:func:`find_python310` when None; a ConfigError when there
    is none); ``bytecode=False`` builds a zip without them (every cold start compiles).
    """
    policyfile.load([policies])
    modules = function_files(source)
    if bytecode and python is None:
        python = find_python310()
        if python is None:
            raise ConfigError(
                "no CPython 3.10 found to compile the function's .pyc (FC runs Python 3.10): "
                "pass --python PATH, or --no-bytecode for a zip that compiles on every cold start"
            )
    stage = out / "scaler"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="edgescaler-wheels-") as tmp:
        for wheel in fetch(function_requirements(store), Path(tmp)):
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(stage)
    prune_botocore_data(stage)
    prune_install_records(stage)
    write_ca_dir(stage / "certifi" / "cacert.pem", stage / CA_DIR)
    shutil.copy2(source / "index.py", stage / "index.py")
    for path in modules:
        target = stage / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    (stage / "policies").mkdir()
    for f in policyfile.policy_files([policies]):
        shutil.copy2(f, stage / "policies" / f.name)
    if bytecode:
        assert python is not None
        compile_bytecode(stage, python)
    archive = out / "edgescaler-fc.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in stage.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(str(path.relative_to(stage)), _FIXED_TIME)
            info.external_attr = (path.stat().st_mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return archive


def write_ca_dir(bundle: Path, dest: Path, *, openssl: str = "openssl") -> int:
    """Write every certificate of the PEM ``bundle`` into ``dest`` (created, or emptied) under
    its OpenSSL subject-hash name; return how many were written (see :mod:`edgescaler.cloud.tls`:
    the function loads this directory lazily instead of parsing the whole bundle at cold start).

    The hash is ``openssl x509 -subject_hash`` of each certificate: the name OpenSSL looks up at
    handshake time (the same in OpenSSL 1.0 to 3.x and LibreSSL). Certificates whose subjects
    share a hash get ``.0``, ``.1``, ... in bundle order, as ``openssl rehash`` numbers them.
    Real files, not symlinks, so that the directory survives the zip. Raises ConfigError.
    """
    binary = shutil.which(openssl)
    if binary is None:
        raise ConfigError(
            f"{openssl!r} not found on PATH: it names the CA files the function loads lazily "
            "(install openssl)"
        )
    try:
        certs = _PEM.findall(bundle.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{bundle}: {exc.strerror}") from None
    if not certs:
        raise ConfigError(f"{bundle}: no PEM certificate in it")
    names: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgescaler-ca-") as tmp:
        for i, pem in enumerate(certs):
            path = Path(tmp) / f"{i}.pem"
            path.write_bytes(pem)
            proc = subprocess.run(
                [binary, "x509", "-noout", "-subject_hash", "-in", str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
            digest = proc.stdout.strip()
            if proc.returncode != 0 or not _SUBJECT_HASH.fullmatch(digest):
                tail = (proc.stderr.strip().splitlines() or ["no hash printed"])[-1]
                raise ConfigError(f"{bundle}: certificate #{i + 1}: openssl: {tail[:200]}")
            names.append(digest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    seen: dict[str, int] = {}
    for digest, pem in zip(names, certs, strict=True):
        n = seen.get(digest, 0)
        seen[digest] = n + 1
        (dest / f"{digest}.{n}").write_bytes(pem + b"\n")
    return len(certs)


def main(
    *,
    out: str,
    policies: str,
    store: str = "oss",
    python: str | None = None,
    bytecode: bool = True,
    say: Callable[[str], None] = print,
) -> int:
    repo_source = Path(__file__).resolve().parent.parent
    if not (repo_source / "index.py").is_file():
        raise ConfigError(f"{repo_source}/index.py not found: run from a source checkout")
    archive = build(
        source=repo_source,
        policies=Path(policies),
        out=Path(out),
        store=store,
        python=python,
        bytecode=bytecode,
    )
    size = archive.stat().st_size
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    compiled = sum(n.endswith(".pyc") for n in names)
    say(
        f"built {archive} ({size / 1e6:.1f} MB, {len(names)} files, {compiled} .pyc, {store} "
        f"store) for Python {PYTHON_VERSION} {PLATFORM}; directory {archive.parent / 'scaler'}"
    )
    if size > API_UPLOAD_LIMIT:
        say("warning: larger than the 100 MB FC API upload limit; upload through OSS")
    return 0
