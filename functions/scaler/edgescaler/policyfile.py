"""Reading policy files: YAML in, validated :class:`~edgescaler.policy.Policy` out.

Errors come back all at once, each as ``file:line: field: message``
(e.g. ``policies/beijing-edge.yaml:14: scale_out.worker_system_disk_size: must be a multiple
of 10``). Lines are found by walking the YAML node tree alongside pydantic's error locations.
Duplicate keys (which plain YAML loaders silently overwrite) are errors too.

YAML is read with libyaml's parser and composer (``CSafeLoader``) where PyYAML has it (its wheels
do): the same events, nodes, marks and values as the pure-Python ``SafeLoader``, about 20 times
faster (a policy's YAML in 0.2 ms instead of 4). Values are built by PyYAML's own safe
constructor either way. The pure loader stays the reference: libyaml only ever answers for a
document it reads into a valid policy. Any other document is read again by the pure loader, so
every problem is reported exactly as it always was (libyaml words some errors its own way,
accepts some text the pure loader refuses, and stops at its own nesting limit of 1000 before
our check of 32 runs); and a document with a tab, a byte-order mark or a tag (``!x``) goes to
the pure loader directly: there the two were found, by fuzzing, to read valid documents
differently.

Hostile files are refused with a per-file problem, never a crash or a hang: files larger than
:data:`MAX_FILE_BYTES`; YAML nested deeper than :data:`MAX_DEPTH` (checked on the parser's event
stream, which does not recurse, before the tree is built); more than :data:`MAX_NODES` nodes once
aliases are expanded (an "alias bomb" of a few lines expands to billions), or nested more than
:data:`MAX_DEPTH` deep once they are (an anchor used inside itself); values a YAML
constructor cannot build (an integer of thousands of digits). In a directory, hidden files
(``.x.yaml``, macOS AppleDouble ``._x.yaml``) are ignored; a ``.yaml`` entry that is not a
readable regular file (a dangling or looping symlink, a FIFO) is a problem, not silently skipped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edgescaler.errors import PolicyError, Problem
from edgescaler.outside import one_line, quote
from edgescaler.policy import FieldError, Policy

SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 256 * 1024  # a policy is 1-3 kB
MAX_DEPTH = 32
MAX_NODES = 20_000
# Policy unit tests live beside their policy as NAME.test.yaml (see edgescaler.policytest).
TEST_SUFFIXES = (".test.yaml", ".test.yml")
RULE_TYPES = ("target_tracking", "step", "threshold", "predictive")
# libyaml when PyYAML was built with it (every wheel is); the pure-Python loader otherwise.
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Where libyaml and the pure loader part ways: tabs, a BOM inside the text, tags ("!" starting
# a token; "!=" inside a PromQL query does not).
_PURE_ONLY = re.compile(r"[\t\ufeff]|(?:^|[\s\[{,:?-])!")
# A warm FC instance reads the same policy files on every invocation: load() hands back the
# Policy (immutable) it validated before for the same path and the same text, without YAML and
# pydantic again (50 policies: 31 ms of CPU on Python 3.10, 1 ms from memory).
# Keyed by the SHA-256 of the text, so any edit is a miss; a file with problems is never kept.
# It holds every policy of the last load, however many, and older ones while the total stays
# within _CACHE_SIZE (a process cycling through edits or directories).
_CACHE_SIZE = 512
_Memo = dict[tuple[str, bytes], Policy]
_validated: _Memo = {}

Loc = tuple[str | int, ...]


class _Refused(Exception):
    """The document is refused as a whole (too deep, too large): ``line`` where it showed."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _check_shape(text: str, loader: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH using the parser's events (no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else None
                raise _Refused(line, f"nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _compose(text: str, loader: Any) -> yaml.Node | None:
    """The document's node tree (raises _Refused, YAMLError).

    The pure loader's composer recurses in Python, so its event stream is checked first
    (:func:`_check_shape`); libyaml refuses nesting past 1000 levels itself, and what passes 32
    is refused by :class:`_Builder` (the document is then read by the pure loader, which
    reports it).
    """
    if loader is yaml.SafeLoader:
        _check_shape(text, loader)
    node: yaml.Node | None = yaml.compose(text, Loader=loader)
    return node


# Numbers as written: YAML 1.1 also reads 1:30 as 90 (sexagesimal), 1_000 as 1000, 0x10 as 16,
# 017 as 15 (octal) and 0b11 as 3, and a policy must not mean something else than it shows.
# (.inf and .nan pass: the policy's own checks name them.)
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
_PLAIN_NUMBER = re.compile(
    r"[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?\Z|[-+]?\.[0-9]+(?:[eE][-+]?[0-9]+)?\Z"
    r"|[-+]?\.(?:inf|Inf|INF|nan|NaN|NAN)\Z"
)


class _Builder:
    """Builds plain Python data from a composed YAML node tree, noting each path's line.

    Counts every node it builds, aliases expanded: more than MAX_NODES is refused; so is a
    collection nested more than MAX_DEPTH deep, aliases expanded (an anchor inside itself,
    ``&a [*a]``, nests for ever).
    """

    def __init__(self) -> None:
        self.lines: dict[Loc, int] = {}
        self.duplicates: list[Loc] = []
        self._loader = yaml.SafeLoader("")
        self._nodes = 0

    def _scalar(self, node: yaml.Node) -> Any:
        plain = isinstance(node, yaml.ScalarNode) and not node.style  # "" from libyaml
        if plain and node.tag in _NUMBER_TAGS and not _PLAIN_NUMBER.match(node.value):
            raise _Refused(
                node.start_mark.line + 1,
                f"{quote(node.value)} does not read as written (YAML 1.1 reads 1:30 as 90, "
                f"1_000 as 1000, 0x10 as 16, 017 as 15); write the number plainly, a duration "
                f"as 90s, 1m30s or 1h30m",
            )
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:  # a tag the safe constructor does not know (!foo)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise _Refused(
                node.start_mark.line + 1, f"invalid YAML: {one_line(problem, 120)}"
            ) from None
        except Exception as exc:  # an int past CPython's digit limit; PyYAML on "!!int ''"
            text = str(exc) or type(exc).__name__
            raise _Refused(
                node.start_mark.line + 1, f"cannot read value: {one_line(text, 80)}"
            ) from None

    def build(self, node: yaml.Node, path: Loc = ()) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(
                node.start_mark.line + 1,
                f"more than {MAX_NODES} values once aliases are expanded",
            )
        if isinstance(node, yaml.CollectionNode) and len(path) >= MAX_DEPTH:
            raise _Refused(
                node.start_mark.line + 1,
                f"nested more than {MAX_DEPTH} levels deep once aliases are expanded",
            )
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                # Keys are names: a mapping or sequence as a key is shown by its kind, never
                # built (it could be an alias to something huge).
                if isinstance(key_node, yaml.ScalarNode):
                    key = self._scalar(key_node)
                else:
                    key = f"<{key_node.id}>"
                if not isinstance(key, str | int):
                    key = str(key)
                child = (*path, key)
                if key in out:
                    self.duplicates.append(child)
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if part.isidentifier() and len(part) <= 40 else repr(part[:40])[1:-1]
            if name != part:
                name = f"'{name}{'...' if len(part) > 40 else ''}'"
            out += f".{name}" if out else name
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


def parse(text: str, file: str, *, loader: Any = LOADER) -> Policy:
    """Validate one policy document. Raises PolicyError listing every problem found.

    ``loader``: the PyYAML loader class that parses and composes (:data:`LOADER`).
    """
    return validate(text, file, Policy, "policy", loader=loader)


M = TypeVar("M", bound=BaseModel)


def validate(text: str, file: str, model: type[M], what: str, *, loader: Any = LOADER) -> M:
    """Validate the YAML document ``text`` as ``model`` (a ``what``, for messages), with every
    problem located as ``file:line: field: message``. Raises PolicyError.

    ``loader`` answers only for a document it reads into a valid ``model``; any other document
    (and one :data:`_PURE_ONLY` flags) is read by the pure-Python ``SafeLoader``, the reference.
    """
    if loader is not yaml.SafeLoader and not _PURE_ONLY.search(text):
        try:
            return _validate(text, file, model, what, loader)
        except (PolicyError, ValueError):  # ValueError: libyaml cannot encode a surrogate
            pass  # reported exactly as the pure loader reports it
    return _validate(text, file, model, what, yaml.SafeLoader)


def _validate(text: str, file: str, model: type[M], what: str, loader: Any) -> M:
    try:
        node = _compose(text, loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(
            [Problem(file, line, "", f"invalid YAML: {one_line(problem, 120)}")]
        ) from None
    except _Refused as exc:
        raise PolicyError([Problem(file, exc.line, "", exc.message)]) from None
    if node is None:
        raise PolicyError([Problem(file, None, "", f"empty file; expected one {what} mapping")])
    if not isinstance(node, yaml.MappingNode):
        raise PolicyError(
            [Problem(file, node.start_mark.line + 1, "", f"expected a mapping (one {what})")]
        )
    builder = _Builder()
    try:
        data = builder.build(node)
    except _Refused as exc:
        raise PolicyError([Problem(file, exc.line, "", exc.message)]) from None
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
    """Expand directories into their ``*.yaml``/``*.yml`` files (sorted; hidden files and policy
    tests ``*.test.yaml`` left out); keep files as given. Entries that are not readable regular
    files are returned too, so that :func:`load` reports them."""
    return expand(paths, lambda f: f.suffix in SUFFIXES and not is_test_file(f))


def expand(paths: Iterable[str | Path], wanted: Callable[[Path], bool]) -> list[Path]:
    """Directories in ``paths`` expanded into their ``wanted`` entries (sorted, hidden files and
    subdirectories left out); other paths kept as given, whatever they are (reading them
    reports what is wrong). A path that does not exist is a PolicyError."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(
                sorted(
                    f
                    for f in p.iterdir()
                    if not f.name.startswith(".") and wanted(f) and not f.is_dir()
                )
            )
        elif p.exists() or p.is_symlink():
            out.append(p)
        else:
            raise PolicyError([Problem(str(p), None, "", "no such file or directory")])
    return out


def read_text(f: Path) -> str:
    """The text of policy file ``f``; PolicyError (one problem) if it cannot be used."""
    where = str(f)
    if not f.is_file():  # follows symlinks: False for dangling and looping ones, FIFOs, ...
        kind = "a dangling or looping symbolic link" if f.is_symlink() else "not a regular file"
        raise PolicyError([Problem(where, None, "", f"cannot read: {kind}")])
    try:
        with f.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PolicyError(
            [Problem(where, None, "", f"cannot read: {exc.strerror or type(exc).__name__}")]
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise PolicyError(
            [Problem(where, None, "", f"larger than {MAX_FILE_BYTES // 1024} KiB; not a policy")]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            [Problem(where, None, "", f"cannot read: not UTF-8 (byte {exc.start})")]
        ) from None


def _parse_once(text: str, file: str, used: _Memo) -> Policy:
    """:func:`parse`, or the Policy it gave before for this ``file`` and ``text``; recorded in
    ``used`` (the policies of this load, see :func:`_remember`)."""
    key = (file, hashlib.sha256(text.encode()).digest())
    policy = _validated.get(key)
    if policy is None:
        policy = parse(text, file)
    used[key] = policy
    return policy


def _remember(used: _Memo) -> None:
    """Keep the policies of a load for the next one: all of them, and the older ones while the
    total stays within :data:`_CACHE_SIZE`. (A fixed-size memo smaller than a function's policy
    set would be emptied by every load and serve nothing.) Concurrent loads each install a
    whole memo; the last one wins, and any of them is valid."""
    global _validated
    merged = {**_validated, **used}
    _validated = merged if len(merged) <= _CACHE_SIZE else used


def load(paths: Iterable[str | Path]) -> list[Policy]:
    """Load and validate every policy under ``paths``; names must be unique across files.

    Raises PolicyError with the problems of all files together.
    """
    paths = list(paths)
    files = policy_files(paths)
    problems: list[Problem] = []
    policies: list[Policy] = []
    seen: dict[str, str] = {}
    used: _Memo = {}
    for f in files:
        try:
            text = read_text(f)
            policy = _parse_once(text, str(f), used)
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
    _remember(used)
    if not files:
        problems.append(
            Problem(", ".join(map(str, paths)) or ".", None, "", "no policy files (*.yaml) found")
        )
    if problems:
        raise PolicyError(problems)
    return policies
