"""Logging hygiene: third-party loggers that dump headers stay quiet, and every line is redacted.

Some libraries log request headers at DEBUG — botocore prints ``x-amz-security-token`` on every
request, urllib3/httpcore print connection details, ``aliyun-fc2`` dumps its request (token
included) on errors through the root logger. :func:`install` (called by the FC handler and the
CLI before any work) does two things, idempotently:

* pins those loggers at WARNING, whatever the root level (``edgescaler -v`` turns on DEBUG for
  edgescaler's own loggers, not for theirs);
* adds :class:`RedactingFilter` to every handler of the root logger (FC's own handler included),
  which masks every registered secret (:mod:`edgescaler.sensitive`), whole or in fragments, in
  each record's final message — so a secret that reaches a log call by any path is still masked.
"""

from __future__ import annotations

import logging

from edgescaler.sensitive import redact

# Loggers known to log headers, bodies or URLs with credentials at DEBUG/INFO.
NOISY = (
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "requests",
    "httpx",
    "httpcore",
    "hpack",
    "fc2",
    "alibabacloud_oss_v2",
    "alibabacloud_tea_openapi",
)


class RedactingFilter(logging.Filter):
    """Masks registered secrets in the formatted message of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return True
        masked = redact(text)
        if masked != text:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            # The traceback's last line is the exception message: render it redacted.
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(formatted)
            record.exc_info = None
        return True


_FILTER = RedactingFilter()


def install(root: logging.Logger | None = None) -> None:
    """Quiet the noisy loggers and put the redacting filter on every root handler."""
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    root = root or logging.getLogger()
    for handler in root.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
