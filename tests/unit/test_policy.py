"""Policy validation: every invalid shape is a fixture file that names its expected message."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from edgescaler import policyfile
from edgescaler.errors import PolicyError
from edgescaler.policy import parse_duration
from tests.support.builders import BASE, policy

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "policies"
REPO = Path(__file__).resolve().parents[2]
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' header"
    return first[len("# expect: ") :]


def test_there_is_a_fixture_per_shape() -> None:
    assert len(INVALID) >= 35


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_policy_reports_file_line_field_message(path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        policyfile.load([path])
    rendered = [str(p) for p in info.value.problems]
    exp = expected(path)
    want = f"{path}:{exp}" if exp[0].isdigit() else f"{path}: {exp}"
    assert any(r.startswith(want) for r in rendered), rendered
    # one line each, and the error as a whole is one line too
    assert all("\n" not in r for r in rendered)
    assert "\n" not in str(info.value)


def test_inline_password_is_never_echoed() -> None:
    path = FIXTURES / "invalid" / "inline-password.yaml"
    with pytest.raises(PolicyError) as info:
        policyfile.load([path])
    assert "Sup3r-Secret!" not in str(info.value)
    assert all("Sup3r-Secret!" not in str(p) for p in info.value.problems)


def test_all_errors_of_a_file_come_at_once(tmp_path: Path) -> None:
    text = (REPO / "policies" / "beijing-edge.yaml").read_text()
    bad = (
        text.replace("worker_system_disk_size: 20", "worker_system_disk_size: 25")
        .replace("worker_period: 1", "worker_period: 5")
        .replace("max_step: 5", "max_step: 0")
        .replace("cooldown: 10m", "cooldown: soon")
    )
    f = tmp_path / "bad.yaml"
    f.write_text(bad)
    with pytest.raises(PolicyError) as info:
        policyfile.load([f])
    fields = sorted(p.field for p in info.value.problems)
    assert fields == [
        "cooldown",
        "limits.max_step",
        "scale_out.worker_period",
        "scale_out.worker_system_disk_size",
    ]
    assert "(and 3 more)" in str(info.value)


def test_names_must_be_unique_across_files() -> None:
    with pytest.raises(PolicyError) as info:
        policyfile.load([FIXTURES / "duplicate-names"])
    (problem,) = info.value.problems
    assert problem.file.endswith("b.yaml") and problem.field == "name"
    assert "'same-name' is already used by" in problem.message and "a.yaml" in problem.message


def test_example_policies_and_valid_fixtures_load() -> None:
    loaded = policyfile.load([REPO / "policies", FIXTURES / "valid"])
    names = {p.name for p in loaded}
    assert {"beijing-edge", "minimal"} <= names
    minimal = next(p for p in loaded if p.name == "minimal")
    assert minimal.cooldown == timedelta(minutes=10)  # the default
    assert minimal.scale_out.worker_data_disk_size == 0
    assert minimal.metrics["cpu_util"].max_age == timedelta(minutes=2)


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such file or directory"):
        policyfile.load([tmp_path / "nope"])
    with pytest.raises(PolicyError, match="no policy files"):
        policyfile.load([tmp_path])


def test_body_has_the_exact_ens_fields_in_order() -> None:
    p = policy(
        scale_out={
            **BASE["scale_out"],
            "worker_auto_renew": True,
            "worker_auto_renew_period": 3,
            "worker_data_disk_size": 40,
        }
    )
    body = p.scale_out.body(3, "pw")
    assert list(body) == [
        "count",
        "worker_instance_type",
        "ens_region_id",
        "worker_image_id",
        "ens_internet_charge_type",
        "worker_period",
        "login_password",
        "worker_system_disk_size",
        "is_edge_worker",
        "worker_data_disk_size",
        "worker_auto_renew",
        "worker_auto_renew_period",
        "timeout_mins",
    ]
    assert body["count"] == 3 and body["is_edge_worker"] is True and body["timeout_mins"] == 60
    # without auto renew the renew period is not sent
    assert "worker_auto_renew_period" not in policy().scale_out.body(1, "pw")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("10m", 600),
        ("1h30m", 5400),
        ("2h", 7200),
        (45, 45),
        (0, 0),
        ("1m30s", 90),
        ("1d", 86400),
        ("7d12h", 7 * 86400 + 43200),
    ],
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text", ["", "10", "10 m", "m", "1w", "1h1d", "-5s", True, None, [1], float("nan")]
)
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
