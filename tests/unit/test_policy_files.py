"""The policy directory as an attacker or a careless copy would leave it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from edgescaler import policyfile
from edgescaler.errors import PolicyError

VALID = Path(__file__).resolve().parent.parent / "fixtures" / "policies" / "valid" / "minimal.yaml"


@pytest.fixture
def pdir(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    d.mkdir()
    shutil.copy(VALID, d / "minimal.yaml")
    return d


def problems(d: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        policyfile.load([d])
    return [str(p) for p in info.value.problems]


def test_hidden_and_appledouble_files_are_ignored(pdir: Path) -> None:
    (pdir / "._minimal.yaml").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    (pdir / ".draft.yaml").write_text("name: [unfinished")
    assert [p.name for p in policyfile.load([pdir])] == ["minimal"]


def test_a_dangling_symlink_is_a_problem_not_skipped(pdir: Path) -> None:
    (pdir / "gone.yaml").symlink_to(pdir / "nowhere.yaml")
    (found,) = problems(pdir)
    assert found == f"{pdir / 'gone.yaml'}: cannot read: a dangling or looping symbolic link"


def test_a_symlink_loop_is_a_problem(pdir: Path) -> None:
    (pdir / "a.yaml").symlink_to(pdir / "b.yaml")
    (pdir / "b.yaml").symlink_to(pdir / "a.yaml")
    found = problems(pdir)
    assert len(found) == 2 and all("dangling or looping symbolic link" in p for p in found)


def test_a_fifo_is_reported_not_read(pdir: Path) -> None:
    os.mkfifo(pdir / "pipe.yaml")  # opening it would block for ever
    assert problems(pdir) == [f"{pdir / 'pipe.yaml'}: cannot read: not a regular file"]


def test_an_oversized_file_is_refused_unread(pdir: Path) -> None:
    (pdir / "big.yaml").write_text("# " + "x" * policyfile.MAX_FILE_BYTES + "\n")
    assert problems(pdir) == [f"{pdir / 'big.yaml'}: larger than 256 KiB; not a policy"]


def test_an_unreadable_file_names_the_reason(pdir: Path) -> None:
    (pdir / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert problems(pdir) == [f"{pdir / 'latin1.yaml'}: cannot read: not UTF-8 (byte 9)"]


def test_a_symlink_to_a_valid_policy_is_followed(pdir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "shared.yaml"
    elsewhere.write_text(VALID.read_text().replace("name: minimal", "name: shared"))
    (pdir / "shared.yaml").symlink_to(elsewhere)
    assert sorted(p.name for p in policyfile.load([pdir])) == ["minimal", "shared"]


# -- a warm instance reads the same files again: validated once ----------------------------


def test_the_same_file_and_text_give_back_the_policy_validated_before(pdir: Path) -> None:
    first = policyfile.load([pdir])
    again = policyfile.load([pdir])
    assert again[0] is first[0]  # not validated again


def test_an_edited_file_is_validated_again(pdir: Path) -> None:
    first = policyfile.load([pdir])[0]
    path = pdir / "minimal.yaml"
    path.write_text(path.read_text().replace(f"name: {first.name}", "name: renamed"))
    edited = policyfile.load([pdir])[0]
    assert edited is not first and edited.name == "renamed"


def test_a_file_broken_after_it_was_read_is_reported_not_served_from_memory(pdir: Path) -> None:
    policyfile.load([pdir])
    path = pdir / "minimal.yaml"
    path.write_text(path.read_text() + "surprise: 1\n")
    assert any("surprise" in p for p in problems(pdir))


def test_the_same_text_under_another_path_is_its_own_policy(pdir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(pdir / "minimal.yaml", other / "minimal.yaml")
    a, b = policyfile.load([pdir])[0], policyfile.load([other])[0]
    assert a == b and a is not b  # messages name the file each came from


def test_a_policy_set_larger_than_the_memo_bound_is_still_validated_once(
    pdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fixed-size memo smaller than the function's policies was emptied by every load."""
    monkeypatch.setattr(policyfile, "_CACHE_SIZE", 2)
    monkeypatch.setattr(policyfile, "_validated", {})
    text = (pdir / "minimal.yaml").read_text()
    for i in range(4):
        (pdir / f"more-{i}.yaml").write_text(text.replace("name: minimal", f"name: more-{i}"))
    first = policyfile.load([pdir])
    again = policyfile.load([pdir])
    assert len(first) == 5
    assert all(a is b for a, b in zip(first, again, strict=True))


def test_the_memo_keeps_older_policies_only_within_its_bound(
    pdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policyfile, "_CACHE_SIZE", 2)
    monkeypatch.setattr(policyfile, "_validated", {})
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(pdir / "minimal.yaml", other / "minimal.yaml")
    a = policyfile.load([pdir])[0]
    policyfile.load([other])  # two entries: both kept
    assert policyfile.load([pdir])[0] is a
    third = tmp_path / "third"
    third.mkdir()
    (third / "x.yaml").write_text((pdir / "minimal.yaml").read_text())
    (third / "y.yaml").write_text(
        (pdir / "minimal.yaml").read_text().replace("name: minimal", "name: y")
    )
    policyfile.load([third])  # four would exceed the bound: only these two are kept
    assert len(policyfile._validated) == 2
    assert policyfile.load([pdir])[0] is not a  # validated again


def test_a_problem_is_one_bounded_line_whatever_the_file_name_and_values(tmp_path: Path) -> None:
    d = tmp_path / "evil\nINJECTED: ok line"
    d.mkdir()
    text = VALID.read_text().replace("metric: cpu_util", "metric: " + "m" * 100_000)
    (d / "a.yaml").write_text(text)
    with pytest.raises(PolicyError) as info:
        policyfile.load([d])
    (problem,) = info.value.problems
    line = str(problem)
    assert "\n" not in line and len(line) <= 600
    assert "unknown metric" in line
