"""Shared pytest setup: the real-part fixtures live in tests/support as plugins."""

pytest_plugins = [
    "tests.support.prometheus",
    "tests.support.s3",
    "tests.support.oss",
    "tests.support.stores",
]
