"""A wrapper that keeps secret strings out of logs, reports, reprs and tracebacks."""

from __future__ import annotations

from typing import Any

_MASK = "***"


class Secret:
    """Holds a secret string. ``str()``, ``repr()`` and ``format()`` never show it.

    Call :meth:`reveal` at the single place where the clear value must leave the process
    (the signed request body, the HMAC key).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_MASK})"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

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
    """Replace every occurrence of the given secrets in ``text`` with ``***``."""
    for s in secrets:
        value = s.reveal() if isinstance(s, Secret) else s
        if value:
            text = text.replace(value, _MASK)
    return text
