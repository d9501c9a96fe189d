"""Secrets: a wrapper that keeps them out of logs, reports, reprs and tracebacks, and redaction.

Every secret edgescaler handles (the ENS login password, the access key secret, the STS token)
enters the process as a :class:`Secret`. Constructing one also *registers* its value, so that
:func:`redact` can mask it in any text that came from outside — an API error that echoes the
request, a library message that quotes a header — without each call site having to know which
secrets are around. The registry keeps only the most recent :data:`_REGISTRY_SIZE` values
(rotated STS tokens replace older ones), and only values of at least :data:`FRAGMENT` characters.

Redaction masks a secret's whole value and **every fragment of it** of :data:`FRAGMENT`
characters or more, so a message that was cut (by a server, a library or us) through the middle
of a secret leaks nothing of it either. Always redact *before* truncating.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
FRAGMENT = 8  # the shortest piece of a secret that redaction recognises on its own
# The registry keeps the newest secrets up to this many pieces in all: an STS token has ~1,000,
# a password ~10-30, so it holds ~100 tokens or thousands of passwords (one per policy, with
# credentials rotating under a warm instance), in a few MB. A count of secrets would evict the
# passwords of a run of many policies, whose error messages may then quote them.
_MAX_PIECES = 100_000
# Each secret (its raw value) with the forms redaction looks for (:func:`_encodings`): used,
# moved and evicted together.
_registry: OrderedDict[str, tuple[str, ...]] = OrderedDict()
_registry_lock = threading.Lock()
# Every FRAGMENT-character piece of the registered secrets, with how many secrets hold it:
# kept up to date as the registry changes (not rebuilt, not computed per redact() call: a report
# redacts hundreds of strings). redact() only looks pieces up, which is safe while another
# thread registers.
_pieces: dict[str, int] = {}


def _encodings(value: str) -> tuple[str, ...]:
    """``value`` and the forms an API may quote it in: percent-encoded (a query string, a form
    body), JSON-escaped (``\\u003d`` for ``=``, as Gson does for ``<>&='``; every character
    escaped), HTML-escaped. A password such as ``Xy7!pq#Rz9@k2024`` shows as
    ``Xy7%21pq%23Rz9%40k2024`` in an echoed request: no 8-character piece of the raw value is
    left in it."""
    if value.isalnum():
        return (value,)
    out = [
        value,
        quote(value, safe=""),
        quote_plus(value, safe=""),
        json.dumps(value)[1:-1],
        "".join(c if c.isalnum() else f"\\u{ord(c):04x}" for c in value),
        "".join(f"\\u{ord(c):04x}" if c in "<>&='" else c for c in value),
        _html_escaped(value),
    ]
    return tuple(dict.fromkeys(out))


def _html_escaped(value: str) -> str:
    # html.escape's five replacements, without importing html (html.entities: ~2 ms of every
    # cold start, for a form almost no API uses).
    for raw, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;")):
        value = value.replace(raw, entity)
    return value.replace("'", "&#x27;")


def _register(value: str) -> None:
    # Too short to recognise safely: masking every occurrence of a 3-character string would
    # mangle unrelated text. Such values are still masked when passed to redact() explicitly.
    if len(value) < FRAGMENT:
        return
    with _registry_lock:
        if value in _registry:
            _registry.move_to_end(value)
            return
        forms = _registry[value] = _encodings(value)
        _count(forms, +1)
        while len(_pieces) > _MAX_PIECES and len(_registry) > 1:
            _, oldest = _registry.popitem(last=False)
            _count(oldest, -1)


def _count(forms: tuple[str, ...], step: int) -> None:
    """Add (``step`` 1) or remove (-1) the pieces of ``forms``; caller holds the lock."""
    for form in forms:
        for g in _grams(form):
            left = _pieces.get(g, 0) + step
            if left:
                _pieces[g] = left
            else:
                del _pieces[g]


def forget_all() -> None:
    """Empty the registry (tests: each starts without the secrets of the one before)."""
    with _registry_lock:
        _registry.clear()
        _pieces.clear()


def _grams(value: str) -> list[str]:
    return [value[i : i + FRAGMENT] for i in range(len(value) - FRAGMENT + 1)]


def known_secrets() -> list[str]:
    """The registered secret values, newest last (for redaction and for tests)."""
    with _registry_lock:
        return list(_registry)


class Secret:
    """Holds a secret string. ``str()``, ``repr()`` and ``format()`` never show it.

    Call :meth:`reveal` at the single place where the clear value must leave the process
    (the signed request body, the HMAC key). Constructing one registers the value for
    :func:`redact`.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        _register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:
        # Refuse to be pickled or deep-copied into somewhere we do not control.
        raise TypeError("Secret values cannot be pickled")


def redact(text: str, *secrets: Secret | str | None) -> str:
    """``text`` with every registered secret, and every one given, masked as ``***``.

    A secret is masked wherever its whole value or any piece of it at least :data:`FRAGMENT`
    characters long appears; overlapping or adjacent masked spans become one ``***``. Values
    shorter than :data:`FRAGMENT` are masked only where they appear whole.
    """
    registered = _pieces
    extra: set[str] = set()  # pieces of given values that are not registered
    whole: list[str] = []  # given values too short for pieces: masked where they appear whole
    for s in secrets:
        value = s.reveal() if isinstance(s, Secret) else s
        if not value:
            continue
        if len(value) < FRAGMENT:
            whole.append(value)
        elif value not in _registry:  # a registered one's pieces are looked up already
            for form in _encodings(value):
                extra.update(_grams(form))
    if not text or not (registered or extra or whole):
        return text
    masked = bytearray(len(text))  # 1 where a character belongs to a secret
    for value in whole:
        start = text.find(value)
        while start != -1:
            masked[start : start + len(value)] = b"\x01" * len(value)
            start = text.find(value, start + 1)
    if registered or extra:
        for i in range(len(text) - FRAGMENT + 1):
            piece = text[i : i + FRAGMENT]
            if piece in registered or piece in extra:
                masked[i : i + FRAGMENT] = b"\x01" * FRAGMENT
    if not any(masked):
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if masked[i]:
            while i < len(text) and masked[i]:
                i += 1
            out.append(MASK)
        else:
            j = i
            while j < len(text) and not masked[j]:
                j += 1
            out.append(text[i:j])
            i = j
    return "".join(out)
