"""Resolving the ENS login password reference of a policy, and checking it like the API does.

The password is resolved only when a scale-out is about to be sent, held as a :class:`Secret`, and
never echoed: error messages name the reference (the variable), never the value.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from edgescaler.errors import SecretError
from edgescaler.policy import PasswordRef
from edgescaler.sensitive import Secret

# The special characters ENS accepts in an instance password, and the only non-alphanumeric ones
# it accepts. Source: ENS CreateInstance, parameter Password ("可以设置以下特殊符号"),
# https://help.aliyun.com/document_detail/148919.html. The emulator checks the same rule with its
# own copy (edgescaler/emulator/rules.py), on purpose: tests/unit/test_password_rule.py holds
# both to the documented list.
_SPECIAL = frozenset("()`~!@#$%^&*-_+=|{}[]:;'<>,.?/")


def complexity_problem(value: str) -> str | None:
    """Why ``value`` is not a valid ENS password (8 to 30 chars, 3 of 4 classes), or None."""
    if not 8 <= len(value) <= 30:
        return f"must be 8 to 30 characters long (it has {len(value)})"
    classes = [
        any(c in string.ascii_uppercase for c in value),
        any(c in string.ascii_lowercase for c in value),
        any(c in string.digits for c in value),
        any(c in _SPECIAL for c in value),
    ]
    if sum(classes) < 3:
        return "must contain at least 3 of: upper case, lower case, digits, special characters"
    allowed = set(string.ascii_letters) | set(string.digits) | _SPECIAL
    if any(c not in allowed for c in value):
        return "contains a character the ENS API does not accept"
    return None


def resolve(ref: PasswordRef, env: Mapping[str, str], *, where: str) -> Secret:
    """The password ``ref`` points at. ``where`` names the policy for error messages."""
    if ref.from_env is None:  # validation guarantees one reference kind
        raise SecretError(f"{where}: scale_out.login_password: no reference given")
    value = env.get(ref.from_env)
    if value is None or value == "":
        raise SecretError(
            f"{where}: scale_out.login_password: environment variable {ref.from_env} is not set"
        )
    problem = complexity_problem(value)
    if problem:
        raise SecretError(
            f"{where}: scale_out.login_password: the value of {ref.from_env} {problem}"
        )
    return Secret(value)
