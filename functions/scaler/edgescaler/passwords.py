"""Where the ENS login password comes from, and checking it like the API does.

A policy names its password by reference: ``{from_env: VARIABLE}`` or ``{kms_secret: NAME}``
(KMS Secrets Manager, ``GetSecretValue``). The password is resolved only when a scale-out is about
to be sent, held as a :class:`Secret`, and never echoed: error messages name the reference (the
variable or the secret), never the value.

KMS values are cached per process for :data:`KMS_TTL` (a warm FC instance does not call KMS on
every run), fetched with the current run's credentials. When ENS/CS rejects a password,
:meth:`Passwords.forget` drops the cached value so that the caller can fetch it once more — a
rotated secret is then picked up at once.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from edgescaler.errors import ConfigError, SecretError
from edgescaler.policy import PasswordRef, Policy
from edgescaler.sensitive import Secret

if TYPE_CHECKING:
    from edgescaler.cloud.kms import KMSClient, SecretCache

KMS_TTL = 300.0
_kms_cache: SecretCache | None = None

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
    return _checked(Secret(value), ref.from_env, where)


def _checked(value: Secret, what: str, where: str) -> Secret:
    problem = complexity_problem(value.reveal())
    if problem:
        raise SecretError(f"{where}: scale_out.login_password: the value of {what} {problem}")
    return value


def kms_cache() -> SecretCache:
    """The process-wide cache of KMS secret values (built on first use)."""
    global _kms_cache
    if _kms_cache is None:
        from edgescaler.cloud.kms import SecretCache

        _kms_cache = SecretCache(ttl=KMS_TTL)
    return _kms_cache


class Passwords:
    """Resolves a policy's ``login_password`` reference (see the module docstring).

    ``kms_for(region)`` gives the run's KMS client for a policy's region (built by the runtime
    with the run's credentials; its own timeouts, at most two attempts of 2 + 5 s, stay inside
    the deadline's margin); it is only called for ``kms_secret`` references.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        kms_for: Callable[[str], KMSClient] | None = None,
        cache: SecretCache | None = None,
    ) -> None:
        self._env = env
        self._kms_for = kms_for
        self._cache = cache

    def get(self, policy: Policy) -> Secret:
        ref = policy.scale_out.login_password
        if ref.kms_secret is None:
            return resolve(ref, self._env, where=policy.name)
        if self._kms_for is None:
            raise SecretError(f"{policy.name}: scale_out.login_password: KMS is not available")
        name = ref.kms_secret
        try:
            kms = self._kms_for(policy.region)
        except ConfigError as exc:  # e.g. EDGESCALER_KMS_ENDPOINT: this policy's password only
            raise SecretError(f"{policy.name}: scale_out.login_password: {exc}") from None
        cache = self._cache or kms_cache()
        value = cache.get(f"{policy.region}/{name}", lambda _key: kms.get_secret_value(name).value)
        return _checked(value, f"KMS secret {name}", policy.name)

    def forget(self, policy: Policy) -> bool:
        """Drop a cached value after ENS/CS rejected it; True if there was one to refetch."""
        ref = policy.scale_out.login_password
        if ref.kms_secret is None:
            return False
        (self._cache or kms_cache()).invalidate(f"{policy.region}/{ref.kms_secret}")
        return True
