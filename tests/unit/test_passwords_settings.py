"""Password references (never echoed) and EDGESCALER_* settings (one-line errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgescaler import passwords
from edgescaler.errors import ConfigError, SecretError
from edgescaler.policy import PasswordRef
from edgescaler.sensitive import Secret, redact
from edgescaler.settings import DEFAULT_STORE, Settings

REF = PasswordRef(from_env="ENS_PW")


def test_resolves_a_complex_password_as_a_secret() -> None:
    s = passwords.resolve(REF, {"ENS_PW": "Edge-Node-2026"}, where="p")
    assert isinstance(s, Secret) and s.reveal() == "Edge-Node-2026"
    assert "Edge-Node-2026" not in f"{s} {s!r} {s:>20}"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("Ab1!", "8 to 30 characters"),
        ("A" * 31 + "b1!", "8 to 30 characters"),
        ("alllowercase", "at least 3 of"),
        ("lowerUPPER", "at least 3 of"),
        ("Abcdefg1\u00e9", "does not accept"),
    ],
)
def test_weak_passwords_are_refused_without_echo(value: str, why: str) -> None:
    with pytest.raises(SecretError) as info:
        passwords.resolve(REF, {"ENS_PW": value}, where="beijing-edge")
    msg = str(info.value)
    assert why in msg and "ENS_PW" in msg and "beijing-edge" in msg
    assert value not in msg


def test_missing_variable() -> None:
    with pytest.raises(SecretError, match="environment variable ENS_PW is not set"):
        passwords.resolve(REF, {}, where="p")


def test_redact() -> None:
    assert redact("token=abc secret=xyz", Secret("abc"), "xyz", None) == "token=*** secret=***"


def test_settings_defaults() -> None:
    s = Settings.from_env({})
    assert s.store == DEFAULT_STORE and s.dry_run is False and s.policy_dir == Path("policies")
    assert s.prometheus_url is None and s.cs_endpoint is None


def test_settings_from_env() -> None:
    s = Settings.from_env(
        {
            "EDGESCALER_POLICY_DIR": "/code/policies",
            "EDGESCALER_STORE": "sqlite:////tmp/x.db",
            "EDGESCALER_PROMETHEUS_URL": "http://prom:9090/",
            "EDGESCALER_CS_ENDPOINT": "http://127.0.0.1:8080",
            "EDGESCALER_DRY_RUN": "Yes",
        }
    )
    assert s.policy_dir == Path("/code/policies") and s.store == "sqlite:////tmp/x.db"
    assert s.prometheus_url == "http://prom:9090" and s.dry_run is True


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"EDGESCALER_DRY_RUN": "maybe"}, "EDGESCALER_DRY_RUN"),
        ({"EDGESCALER_PROMETHEUS_URL": "prom:9090"}, "EDGESCALER_PROMETHEUS_URL"),
        ({"EDGESCALER_CS_ENDPOINT": "ftp://x"}, "EDGESCALER_CS_ENDPOINT"),
        ({"EDGESCALER_CS_READ_TIMEOUT": "soon"}, "EDGESCALER_CS_READ_TIMEOUT"),
        ({"EDGESCALER_CS_READ_TIMEOUT": "0"}, "EDGESCALER_CS_READ_TIMEOUT"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert str(info.value).startswith(name + ":")
