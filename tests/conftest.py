"""Shared pytest setup: the real-part fixtures live in tests/support as plugins."""

import pytest

from edgescaler import sensitive

pytest_plugins = [
    "tests.support.prometheus",
    "tests.support.s3",
    "tests.support.oss",
    "tests.support.stores",
]


@pytest.fixture(autouse=True)
def _fresh_secret_registry() -> None:
    """Each test starts without the secrets registered by the tests before it."""
    sensitive.forget_all()
