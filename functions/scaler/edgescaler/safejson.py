"""Parsing JSON that came from outside without letting its shape hurt us. Pure.

``json.loads`` alone fails in ways that escape ordinary error handling: nesting deeper than the
interpreter's recursion limit raises ``RecursionError``; an integer of more than 4,300 digits
raises a bare ``ValueError`` (CPython's int-string limit); ``\\ud800`` yields a lone surrogate
that only explodes later, when the text is encoded for hashing or logging; ``NaN`` and
``Infinity`` are accepted although JSON has no such values. :func:`loads` turns every one of
these, and every syntax error, into one :class:`JSONError` with a short message.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64
MAX_NUMBER_DIGITS = 40
# A JSON string (with escapes), matched without backtracking; and anything but a bracket. The
# closing quote is optional: an unterminated string then runs to the end of the text in one match
# (the text is not JSON anyway), where a required quote would fail and make the search start
# again at the next quote inside it, scanning to the end each time (quadratic: 64 KiB of \" took
# 17 s).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class JSONError(ValueError):
    """Outside JSON we refuse: malformed, too deep, a huge number, NaN, a lone surrogate."""


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """How deeply arrays/objects nest in ``text`` (strings ignored); stops counting past
    ``limit`` (returns ``limit + 1``). Linear time, no recursion."""
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text))
    depth = deepest = 0
    for ch in skeleton:
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        else:
            depth -= 1
    return deepest


def _number(text: str) -> Any:
    digits = sum(c.isdigit() for c in text)
    if digits > MAX_NUMBER_DIGITS:
        raise JSONError(f"a number with {digits} digits (at most {MAX_NUMBER_DIGITS})")
    value = float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        raise JSONError(f"number {text[:20]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise JSONError(f"{name} is not a JSON value")


def has_surrogate(value: str) -> bool:
    """True if ``value`` holds a lone surrogate (it cannot be encoded as UTF-8)."""
    return not value.isascii() and _SURROGATE.search(value) is not None


def _check_strings(value: Any) -> None:
    # Iterative walk: depth is already bounded, but there is no need to recurse at all.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if has_surrogate(item):
                raise JSONError("invalid unicode: a lone surrogate (\\ud800-\\udfff)")
        elif isinstance(item, dict):
            for k, v in item.items():
                stack.append(k)
                stack.append(v)
        elif isinstance(item, list):
            stack.extend(item)


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text`` as JSON under the limits above; :class:`JSONError` for anything refused.

    Bytes must be UTF-8. Numbers keep their JSON type (int or float).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONError(f"not UTF-8 (byte {exc.start})") from None
    depth = nesting_depth(text, max_depth)
    if depth > max_depth:
        raise JSONError(f"nested more than {max_depth} levels deep")
    try:
        data = json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_constant)
    except JSONError:
        raise
    except json.JSONDecodeError as exc:
        raise JSONError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # belt and braces: nothing else may escape
        raise JSONError(f"not JSON: {type(exc).__name__}") from None
    # A lone surrogate can only come from a \u escape, or from a surrogate already in a str
    # given to us: ASCII text without "\u" cannot hold one, and needs no walk.
    if "\\u" in text or not text.isascii():
        _check_strings(data)
    return data
