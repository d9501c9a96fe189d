"""Every error edgescaler raises on purpose.

Each error renders as one line that names the file, field, code or endpoint involved, and never
contains a secret (password, access key secret, STS token).

    EdgescalerError
    ├── ConfigError            bad EDGESCALER_* setting or missing credentials
    ├── PolicyError            one or more invalid policy files (carries every problem found)
    ├── EventError             an FC event that is not one of the accepted trigger shapes
    ├── SecretError            a password reference that cannot be resolved or is too weak
    │   ├── KMSApiError        KMS answered GetSecretValue with an error (code, request id, status)
    │   └── KMSTransportError  no usable answer from KMS: timeout, refused, unparseable body
    ├── MetricError            a metric that must not be acted on (carries a reason code)
    ├── CloudError             anything that went wrong talking to the CS API
    │   ├── CSApiError         the API answered with an error (code, message, request id, status)
    │   └── CSTransportError   no usable answer: connect/read timeout, connection refused
    ├── StoreError             the activity store cannot be read or written (fail closed)
    │   └── ConflictError      a create-only write lost: the key already exists
    └── InvokeError            `edgescaler invoke`: the FC API refused the call or gave no answer
        └── FunctionError      the function itself failed (FC answered with X-Fc-Error-Type)
"""

from __future__ import annotations

from dataclasses import dataclass

from edgescaler.outside import MAX_REASON
from edgescaler.outside import message as outside_message


class EdgescalerError(Exception):
    """Base class; ``str(err)`` is a complete one-line message."""


class ConfigError(EdgescalerError):
    """A setting (environment variable, CLI option, credentials) is missing or invalid."""


@dataclass(frozen=True)
class Problem:
    """One validation problem in a policy file, located as precisely as we can."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        """One line of at most :data:`~edgescaler.outside.MAX_REASON` characters, whatever the
        file name or the values the message quotes."""
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f"{self.field}: " if self.field else ""
        return outside_message(f"{where}: {field}{self.message}", MAX_REASON)


class PolicyError(EdgescalerError):
    """Invalid policy files: ``problems`` lists all; ``str()`` gives the first and a count."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = str(problems[0]) if problems else "invalid policy"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more)


class EventError(EdgescalerError):
    """The invocation event is not a timer event, a manual request or another accepted shape."""


class SecretError(EdgescalerError):
    """A ``login_password`` reference cannot be resolved, or the value fails the ENS rules."""


class MetricError(EdgescalerError):
    """A metric reading that must not be acted on.

    ``reason`` is a stable code: ``empty``, ``nan``, ``multiple_series``, ``stale``, ``http_error``,
    ``timeout``, ``connection_error``, ``bad_response``.
    """

    def __init__(self, metric: str, reason: str, detail: str) -> None:
        self.metric = metric
        self.reason = reason
        self.detail = detail
        super().__init__(f"metric {metric}: {reason}: {detail}")


class _Answered:
    """An API that answered with an error status: ``status`` and ``code`` say whether trying
    again can help."""

    status: int
    code: str
    message: str
    request_id: str | None

    def _answered(self, status: int, code: str, message: str, request_id: str | None) -> str:
        """Keep the answer's fields; the text that says them: ``HTTP 404 Code: message
        (request id R)``."""
        self.status, self.code, self.message, self.request_id = status, code, message, request_id
        rid = f" (request id {request_id})" if request_id else ""
        return f"HTTP {status} {code}: {message}{rid}"

    @property
    def throttled(self) -> bool:
        """The API's rate limit (a ``Throttling*`` code or HTTP 429): nothing failed; the same
        call may succeed in seconds."""
        return self.status == 429 or "throttling" in self.code.lower()

    @property
    def retryable(self) -> bool:
        """Throttling and server-side errors may succeed later; everything else will not."""
        return self.status >= 500 or self.throttled


class CloudError(EdgescalerError):
    """Base for CS API failures."""


class CSApiError(_Answered, CloudError):
    """The CS API answered with an HTTP error status and (usually) a JSON error body."""

    def __init__(
        self,
        *,
        action: str,
        status: int,
        code: str,
        message: str,
        request_id: str | None,
        retry_after: float | None = None,
    ) -> None:
        self.action = action
        self.retry_after = retry_after
        super().__init__(f"{action}: {self._answered(status, code, message, request_id)}")


class CSTransportError(CloudError):
    """No usable answer from the CS endpoint (timeout, refused, reset, unparseable body).

    ``may_have_acted`` is what a caller of ScaleOutCluster must respect: True means the request
    may have reached the server and been acted on (read timeout, reset after sending, a 2xx
    without a task id), so the outcome is unknown and a new scale-out must not be sent blindly;
    False means it certainly never reached the server (refused connection, connect timeout).
    """

    def __init__(self, *, action: str, detail: str, may_have_acted: bool = False) -> None:
        self.action = action
        self.detail = detail
        self.may_have_acted = may_have_acted
        super().__init__(f"{action}: {detail}")


class StoreError(EdgescalerError):
    """The store could not be read or written; callers must not scale out."""


class ConflictError(StoreError):
    """A create-only write found the key already present: another writer won."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"store key already exists: {key}")


class KMSApiError(_Answered, SecretError):
    """KMS answered GetSecretValue with an error status.

    Carries the secret's *name* (never its value), the KMS error code
    (``Forbidden.ResourceNotFound``, ``Forbidden.NoPermission``, ``Rejected.Throttling``...), the
    message and the request id.
    """

    def __init__(
        self, *, secret_name: str, status: int, code: str, message: str, request_id: str | None
    ) -> None:
        self.secret_name = secret_name
        answered = self._answered(status, code, message, request_id)
        super().__init__(f"KMS GetSecretValue {secret_name}: {answered}")


class KMSTransportError(SecretError):
    """No usable answer from KMS (timeout, refused, reset, a body that is not the expected JSON)."""

    def __init__(self, *, secret_name: str, detail: str) -> None:
        self.secret_name = secret_name
        self.detail = detail
        super().__init__(f"KMS GetSecretValue {secret_name}: {detail}")


class InvokeError(EdgescalerError):
    """``edgescaler invoke``: the FC API refused the invocation or could not be reached.

    ``code`` is FC's error code (``FunctionNotFound``, ``InvalidAccessKeyId.NotFound``...) or a
    transport reason; ``status`` is the HTTP status (0 when there was no answer).
    """

    def __init__(
        self, message: str, *, code: str = "", status: int = 0, request_id: str | None = None
    ) -> None:
        self.code = code
        self.status = status
        self.request_id = request_id
        rid = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{message}{rid}")


class FunctionError(InvokeError):
    """The function ran and failed: FC answered with ``X-Fc-Error-Type`` (``error_type``)."""

    def __init__(self, message: str, *, error_type: str, request_id: str | None) -> None:
        self.error_type = error_type
        super().__init__(message, code=error_type, status=200, request_id=request_id)
