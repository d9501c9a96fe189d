"""Store backends for the shared contract test; a backend joins by adding a factory here.

A factory gets the test's ``request`` and ``tmp_path``; one that needs a server asks for its
fixture with ``request.getfixturevalue`` so the server only starts when that backend runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgescaler.store.base import Store
from edgescaler.store.memory import MemoryStore
from edgescaler.store.sqlite import SQLiteStore


def _s3(request: pytest.FixtureRequest, tmp: Path) -> Store:
    from edgescaler.store.s3 import S3Store

    moto = request.getfixturevalue("moto_s3")  # tests.support.s3
    return S3Store(moto.bucket, moto.new_prefix(), endpoint_url=moto.endpoint)


def _oss(request: pytest.FixtureRequest, tmp: Path) -> Store:
    from edgescaler.store.oss import OSSStore

    oss = request.getfixturevalue("oss")  # tests.support.oss: OSS's dialect over moto
    return OSSStore(
        oss.bucket,
        oss.new_prefix(),
        credentials=oss.credentials(),
        endpoint=oss.url,
        region=oss.region,
    )


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Store]] = {
    "memory": lambda request, tmp: MemoryStore(),
    "sqlite": lambda request, tmp: SQLiteStore(tmp / "store.db"),
    "s3": _s3,
    "oss": _oss,
}


@pytest.fixture(params=sorted(BACKENDS))
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store = BACKENDS[request.param](request, tmp_path)
    yield store
    store.close()
