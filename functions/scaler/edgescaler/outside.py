"""Quoting text that came from outside: events, policy files, API answers, library messages.

Two rules hold wherever such text reaches a message, a report, a log line or the store:

* it is **redacted before it is cut** (:func:`edgescaler.sensitive.redact`: every known secret,
  whole or in fragments), so a cut can never leave part of a secret behind;
* it is **one short line**: whitespace and control characters collapse, length is capped, and
  anything unprintable (lone surrogates, escapes) is shown escaped, never raw.

:func:`quote` is for a value the user supplied (an unknown key, a bad field value): a short,
escaped excerpt. :func:`message` is for a whole message built from outside text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from edgescaler.sensitive import Secret, redact

MAX_MESSAGE = 300  # every error message edgescaler emits is at most this long
MAX_REASON = 600  # an outcome's reason (it may quote several metrics' failures)
QUOTE_LIMIT = 40
# Redaction looks at this much of a text at most: every message is cut far shorter afterwards,
# so nothing beyond it can be shown, and a huge answer body costs no more than a small one.
_REDACT_WINDOW = 16 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marking the cut with ``...``."""
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """Collapse whitespace, escape control characters and lone surrogates, cap the length.

    Does not redact: use :func:`message` for text that may contain secrets.
    """
    flat = " ".join(text[: limit * 4 + 64].split())
    return clip(_CONTROL.sub(_escape, flat), limit)


def message(
    text: object, limit: int = MAX_MESSAGE, secrets: Iterable[Secret | str | None] = ()
) -> str:
    """Outside text made safe to show: redacted (every registered secret and ``secrets``; before
    cutting), one line, at most ``limit`` characters."""
    if isinstance(text, str):
        raw = text
    else:
        try:
            raw = str(text)
        except ValueError:  # an int past CPython's digit limit, say
            raw = f"<{type(text).__name__}>"
    return one_line(redact(raw[:_REDACT_WINDOW], *secrets), limit)


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A short, escaped, quoted excerpt of a user-supplied value, e.g. ``'abc...'``.

    Only the beginning of the value is looked at (as much as :func:`message` redacts), so a
    100 kB key costs little. It is redacted before it is cut: a secret straddling the cut, or
    moved into the excerpt by an earlier one's shorter mask, is masked whole.
    """
    if isinstance(value, str):
        head = value[:_REDACT_WINDOW]
    elif isinstance(value, int | float | bool) or value is None:
        text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "<huge int>"
        return clip(text, limit)
    else:
        head = f"<{type(value).__name__}>"
    # repr escapes quotes, control characters and lone surrogates.
    shown = redact(head)
    escaped = repr(shown[:limit])[1:-1]
    if len(shown) > limit or (isinstance(value, str) and len(value) > len(head)):
        escaped += "..."
    return f"'{escaped}'"
