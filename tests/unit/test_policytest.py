"""Policy unit tests (NAME.test.yaml) and the test-policies runner."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edgescaler import policyfile, policytest
from edgescaler.cli import main as cli

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"

PASSING = """\
cases:
  - name: steady
    nodes: 5
    readings: {cpu_cores: 6.0, pending_pods: 0}
    expect: {add: 0, outcome: no_change}
"""

FAILING = """\
cases:
  - name: steady
    nodes: 5
    readings: {cpu_cores: 6.0, pending_pods: 0}
    expect: {add: 0}
  - name: wrong on purpose
    nodes: 4
    readings: {cpu_cores: 8.3, pending_pods: 0}
    expect: {add: 5, outcome: scaled}
  - name: wrong reason
    nodes: 4
    readings: {cpu_cores: 8.3, pending_pods: 0}
    expect: {add: 2, reason: "rule 1"}
"""


def setup_dir(tmp_path: Path, test_text: str) -> Path:
    shutil.copy(POLICIES / "beijing-edge.yaml", tmp_path / "beijing-edge.yaml")
    (tmp_path / "beijing-edge.test.yaml").write_text(test_text)
    return tmp_path


def test_every_example_policy_has_passing_tests(capsys: pytest.CaptureFixture[str]) -> None:
    policies = policyfile.policy_files([POLICIES])
    assert policies and not policytest.untested([POLICIES])
    assert policytest.main([str(POLICIES)]) == 0
    out = capsys.readouterr().out
    assert "failed" not in out and " passed in " in out


def test_a_passing_file_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["test-policies", str(setup_dir(tmp_path, PASSING))]) == 0
    assert "beijing-edge.test.yaml ." in capsys.readouterr().out


def test_failures_are_one_line_each_naming_file_line_and_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = setup_dir(tmp_path, FAILING)
    assert cli(["test-policies", str(d)]) == 1
    out = capsys.readouterr().out
    f = d / "beijing-edge.test.yaml"
    assert f"{f} .FF" in out
    failed = [line for line in out.splitlines() if line.startswith("FAILED ")]
    assert failed == [
        f"FAILED {f}:6: case 'wrong on purpose': expected +5 scaled, got +2 scaled: rule 0 "
        "(target_tracking on cpu_cores): ceil(8.3 / 1.4) = 6 nodes desired, 4 current -> +2",
        f"FAILED {f}:10: case 'wrong reason': expected the reason to contain 'rule 1', got: "
        "rule 0 (target_tracking on cpu_cores): ceil(8.3 / 1.4) = 6 nodes desired, 4 current -> +2",
    ]
    assert "2 failed, 1 passed in" in out.splitlines()[-1]


def test_an_invalid_test_file_is_an_error_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = PASSING.replace("nodes: 5", "nodes: 5\n    node: 3")
    d = setup_dir(tmp_path, bad)
    assert cli(["test-policies", str(d)]) == 2
    out = capsys.readouterr().out
    assert f"ERROR {d / 'beijing-edge.test.yaml'}:4: cases[0].node: unknown key" in out


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ("cpu_cores: 6.0", "cpu_cores: .nan"),
        ("cpu_cores: 6.0", "cpu_cores: .inf"),
        ("nodes: 5", "nodes: 5\n    history: {cpu_cores: {step: 0s, values: [1]}}"),
    ],
    ids=["nan-reading", "inf-reading", "zero-step"],
)
def test_values_no_case_can_hold_are_errors_with_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str, where: str
) -> None:
    """They used to end the whole run as an internal error (ValueError, ZeroDivisionError)."""
    d = setup_dir(tmp_path, PASSING.replace(change, where))
    assert cli(["test-policies", str(d)]) == 2
    out = capsys.readouterr().out
    assert f"ERROR {d / 'beijing-edge.test.yaml'}:" in out and "internal error" not in out


def test_a_test_file_without_its_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ghost.test.yaml").write_text(PASSING)
    assert policytest.main([str(tmp_path)]) == 2
    assert "no policy file" in capsys.readouterr().out


def test_no_tests_is_not_a_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(POLICIES / "beijing-edge.yaml", tmp_path / "beijing-edge.yaml")
    assert policytest.main([str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "has no test file" in out and "no tests ran" in out


def test_policy_loading_ignores_test_files(tmp_path: Path) -> None:
    d = setup_dir(tmp_path, PASSING)
    assert [p.name for p in policyfile.load([d])] == ["beijing-edge"]


def test_history_from_a_daily_profile_and_values() -> None:
    (policy,) = policyfile.load([POLICIES / "beijing-edge.yaml"])
    now = datetime(2026, 1, 3, 12, 30, tzinfo=timezone.utc)
    spec = policytest.HistorySpec.model_validate(
        {"step": "30m", "daily": list(range(24)), "days": 2, "values": [100, None]}
    )
    s = policytest._history(spec, "cpu_cores", policy, now)
    assert len(s) == 2 * 48 + 2 and s.end == now and s.step == timedelta(minutes=30)
    assert s.values[-2:] == [100, None]
    # the point 2 steps before the values is at 11:00 UTC; 30 min later it is half way
    assert s.values[-3] == 11.5 and s.values[-4] == 11.0


def test_a_test_file_gets_the_policy_loaders_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    d = setup_dir(tmp_path, "# " + "x" * (policyfile.MAX_FILE_BYTES + 1) + "\n")
    assert cli(["test-policies", str(d)]) == 2
    assert "larger than 256 KiB" in capsys.readouterr().out
    (d / "beijing-edge.test.yaml").unlink()
    os.mkfifo(d / "beijing-edge.test.yaml")  # reading it would block for ever
    assert cli(["test-policies", str(d)]) == 2
    assert "not a regular file" in capsys.readouterr().out
