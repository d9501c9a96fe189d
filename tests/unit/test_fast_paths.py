"""The fast paths of issue 10 give exactly what the slow ones they replaced gave.

libyaml's loader for policies (same data, same problems, same lines as the pure-Python one, for
every fixture, the hostile ones included, and for damaged documents), the shallow
``Activity.to_json`` (the bytes ``dataclasses.asdict`` gave), and the surrogate walk
``safejson`` now skips for text that cannot hold one.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgescaler import policyfile, safejson
from edgescaler.activity import Activity, Status
from edgescaler.errors import PolicyError
from edgescaler.policy import Policy
from tests.support.builders import policy_yaml

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "policies"
DOCUMENTS = sorted(
    [
        *FIXTURES.rglob("*.yaml"),
        *(REPO / "policies").glob("*.yaml"),
        REPO / "functions" / "scaler" / "edgescaler" / "data" / "demo-policy.yaml",
    ]
)


def outcome(text: str, loader: object) -> Policy | list[str]:
    """The policy ``text`` validates to, or its problems as the user reads them."""
    try:
        return policyfile.parse(text, "p.yaml", loader=loader)
    except PolicyError as exc:
        return [str(p) for p in exc.problems]


def test_policies_are_read_with_libyaml() -> None:
    assert yaml.__with_libyaml__  # PyYAML's wheels ship it; the zip's cp310 wheel too
    assert policyfile.LOADER is yaml.CSafeLoader


@pytest.mark.parametrize("path", DOCUMENTS, ids=[f"{p.parent.name}/{p.stem}" for p in DOCUMENTS])
def test_both_loaders_give_the_same_policy_or_the_same_problems(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    fast, pure = outcome(text, yaml.CSafeLoader), outcome(text, yaml.SafeLoader)
    assert fast == pure
    if path.parent.name == "invalid":
        assert isinstance(fast, list) and fast  # the fixture really is refused


def test_a_document_libyaml_refuses_gets_the_pure_loaders_message() -> None:
    # libyaml stops at its own nesting limit (1000) and words it its own way.
    deep = policy_yaml() + "alarms: " + "[" * 1200 + "]" * 1200 + "\n"
    with pytest.raises(yaml.YAMLError, match="maximum nesting depth"):
        yaml.compose(deep, Loader=yaml.CSafeLoader)
    (problem,) = outcome(deep, yaml.CSafeLoader)
    assert problem.endswith(f": nested more than {policyfile.MAX_DEPTH} levels deep")
    assert outcome(deep, yaml.CSafeLoader) == outcome(deep, yaml.SafeLoader)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("name: test-edge", "name: test-edge\t"),  # libyaml accepts these tabs
        ("cooldown: 10m", "cooldown: 10m\t# why"),
        ("region: cn-hangzhou", "region:\tcn-hangzhou"),
        ("name: test-edge", "name: ! test-edge"),
        ("cooldown: 10m", "cooldown: 10m\ufeff"),
    ],
)
def test_where_the_loaders_part_ways_the_pure_one_answers(old: str, new: str) -> None:
    text = policy_yaml().replace(old, new)
    assert text != policy_yaml()
    assert outcome(text, yaml.CSafeLoader) == outcome(text, yaml.SafeLoader)


_TEXTS = [p.read_text(encoding="utf-8") for p in DOCUMENTS] + [policy_yaml()]
_SPECIALS = [
    *":-[]{}&*!|>'\"%@`#,?\n\t \r",
    *["\ud800", "\x00", "\x85", "\u2028", "\ufeff", "\u3000", "\U0001f600"],
    *["|\n  x\n", "&a ", "*a", "<<: *a\n", "? a\n: b\n", "{a: 1}", "\n---\n", "!!int ", "~"],
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(_TEXTS) - 1),
    edits=st.lists(
        st.tuples(
            st.floats(0, 1),
            st.integers(0, 3),
            st.one_of(st.sampled_from(_SPECIALS), st.text(max_size=4)),
        ),
        max_size=4,
    ),
)
def test_damaged_documents_read_the_same_with_both_loaders(
    which: int, edits: list[tuple[float, int, str]]
) -> None:
    text = _TEXTS[which]
    for where, cut, insert in edits:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + cut :]
    assert outcome(text, yaml.CSafeLoader) == outcome(text, yaml.SafeLoader)


def test_activity_json_is_what_asdict_gave() -> None:
    t = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)
    act = Activity(
        cluster_id="c1",
        seq=3,
        policy="p",
        add=2,
        status=Status.SUBMITTED,
        created_at=t,
        updated_at=t,
        task_id="T-1",
        request_id="R-1",
        event_key="timer:x",
        trigger="timer",
        error="bad \u00e9",
        decision={"add": 2, "rules": [{"rule": 0, "detail": "x"}], "clamps": [], "n": None},
        prior_tasks=("T-0", "T-00"),
        retry_at=t,
    )
    old = asdict(act)
    for k in ("created_at", "updated_at", "ended_at", "retry_at"):
        old[k] = old[k].isoformat() if old[k] else None
    expected = json.dumps(old, sort_keys=True, separators=(",", ":")).encode()
    assert act.to_json() == expected
    assert Activity.from_json(act.to_json()) == act


@pytest.mark.parametrize(
    "text",
    ['["\ud800"]', '{"k": "caf\u00e9 \udc00"}', '{"s": "\\ud800"}', '["\\\\", "\\uDBFF"]'],
)
def test_a_lone_surrogate_is_refused_raw_or_escaped(text: str) -> None:
    with pytest.raises(safejson.JSONError, match="lone surrogate"):
        safejson.loads(text)


def test_text_without_escapes_or_non_ascii_needs_no_walk_and_is_kept() -> None:
    assert safejson.loads('{"a": ["x", {"b": "y"}], "c": 1}') == {"a": ["x", {"b": "y"}], "c": 1}
    assert safejson.loads('{"a": "caf\u00e9", "e": "\\u00e9"}') == {"a": "caf\u00e9", "e": "é"}
