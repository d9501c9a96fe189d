"""The base of every string code (statuses, outcomes, phases): a ``str`` that is also an enum.

``Code`` members compare equal to their value, serialise to JSON as it, and format as it in
f-strings on every Python version (3.11 changed how mixed-in enums format; the two methods below
pin it). Subclass it with members: ``class Status(Code): CLAIMED = "claimed"``.
"""

from __future__ import annotations

from enum import Enum


class Code(str, Enum):
    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
