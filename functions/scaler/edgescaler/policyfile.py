"""Reading policy files: YAML in, validated :class:`~edgescaler.policy.Policy` out.

Errors come back all at once, each as ``file:line: field: message``
(e.g. ``policies/beijing-edge.yaml:14: scale_out.worker_system_disk_size: must be a multiple
of 10``). Lines are found by walking the YAML node tree alongside pydantic's error locations.
Duplicate keys (which plain YAML loaders silently overwrite) are errors too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edgescaler.errors import PolicyError, Problem
from edgescaler.policy import FieldError, Policy

SUFFIXES = (".yaml", ".yml")
# Policy unit tests live beside their policy as NAME.test.yaml (see edgescaler.policytest).
TEST_SUFFIXES = (".test.yaml", ".test.yml")
RULE_TYPES = ("target_tracking", "step", "threshold", "predictive")

Loc = tuple[str | int, ...]


class _Builder:
    """Builds plain Python data from a composed YAML node tree, noting each path's line."""

    def __init__(self) -> None:
        self.lines: dict[Loc, int] = {}
        self.duplicates: list[Loc] = []
        self._loader = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Loc = ()) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._loader.construct_object(key_node, deep=True)
                if isinstance(key, list | dict):
                    key = str(key)
                child = (*path, key)
                if key in out:
                    self.duplicates.append(child)
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._loader.construct_object(node, deep=True)


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _data_path(data: Any, loc: Sequence[str | int]) -> Loc:
    """Drop the parts of a pydantic loc that are not in the data (union tags like 'step')."""
    path: list[str | int] = []
    cur = data
    for part in loc:
        in_dict = isinstance(cur, dict) and part in cur
        in_list = isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        if in_dict or in_list:
            cur = cur[part]
            path.append(part)
        elif isinstance(cur, dict) and isinstance(part, str) and part not in cur:
            # A missing field, or a tagged-union discriminator: keep field names, skip tags.
            if part in RULE_TYPES and cur.get("type") == part:
                continue
            path.append(part)
            cur = None
        else:
            path.append(part)
            cur = None
    return tuple(path)


def _line_for(lines: dict[Loc, int], path: Loc) -> int | None:
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def _message(err: Any) -> tuple[Loc, str]:
    loc: Loc = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, FieldError):
        return (*loc, *cause.loc), cause.message
    kind = err["type"]
    if kind == "extra_forbidden":
        return loc, "unknown key"
    if kind == "missing":
        return loc, "required"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        expected = ctx.get("expected_tags", "")
        return (*loc, "type"), f"must be one of {expected}".replace("'", "")
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return loc, msg


def parse(text: str, file: str) -> Policy:
    """Validate one policy document. Raises PolicyError listing every problem found."""
    return validate(text, file, Policy, "policy")


M = TypeVar("M", bound=BaseModel)


def validate(text: str, file: str, model: type[M], what: str) -> M:
    """Validate the YAML document ``text`` as ``model`` (a ``what``, for messages), with every
    problem located as ``file:line: field: message``. Raises PolicyError."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError([Problem(file, line, "", f"invalid YAML: {problem}")]) from None
    if node is None:
        raise PolicyError([Problem(file, None, "", f"empty file; expected one {what} mapping")])
    if not isinstance(node, yaml.MappingNode):
        raise PolicyError(
            [Problem(file, node.start_mark.line + 1, "", f"expected a mapping (one {what})")]
        )
    builder = _Builder()
    data = builder.build(node)
    lines = builder.lines
    problems = [
        Problem(file, lines.get(loc), _dotted(loc), "duplicate key") for loc in builder.duplicates
    ]
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc, msg = _message(err)
            path = _data_path(data, loc)
            problems.append(Problem(file, _line_for(lines, path), _dotted(path), msg))
        raise PolicyError(sorted(problems, key=lambda p: (p.line or 0, p.field))) from None
    if problems:
        raise PolicyError(problems)
    return result


def line_of(text: str, loc: Loc) -> int | None:
    """The line of ``loc`` (a path of keys and indexes) in the YAML document ``text``."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    builder = _Builder()
    builder.build(node)
    return _line_for(builder.lines, loc)


def is_test_file(path: Path) -> bool:
    """``NAME.test.yaml``: a policy's unit tests, not a policy."""
    return path.name.endswith(TEST_SUFFIXES)


def policy_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories into their ``*.yaml``/``*.yml`` files (sorted), leaving out policy
    tests (``*.test.yaml``); keep files as given."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(
                sorted(
                    f
                    for f in p.iterdir()
                    if f.suffix in SUFFIXES and not is_test_file(f) and f.is_file()
                )
            )
        elif p.is_file():
            out.append(p)
        else:
            raise PolicyError([Problem(str(p), None, "", "no such file or directory")])
    return out


def load(paths: Iterable[str | Path]) -> list[Policy]:
    """Load and validate every policy under ``paths``; names must be unique across files.

    Raises PolicyError with the problems of all files together.
    """
    paths = list(paths)
    files = policy_files(paths)
    problems: list[Problem] = []
    policies: list[Policy] = []
    seen: dict[str, str] = {}
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(f), None, "", f"cannot read: {exc}"))
            continue
        try:
            policy = parse(text, str(f))
        except PolicyError as exc:
            problems.extend(exc.problems)
            continue
        if policy.name in seen:
            line = next(
                (i + 1 for i, ln in enumerate(text.splitlines()) if ln.startswith("name:")), None
            )
            problems.append(
                Problem(
                    str(f), line, "name", f"{policy.name!r} is already used by {seen[policy.name]}"
                )
            )
            continue
        seen[policy.name] = str(f)
        policies.append(policy)
    if not files:
        problems.append(
            Problem(", ".join(map(str, paths)) or ".", None, "", "no policy files (*.yaml) found")
        )
    if problems:
        raise PolicyError(problems)
    return policies
