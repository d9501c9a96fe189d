"""Logging: the run report as log lines, and hygiene (quiet header dumpers, every line redacted).

:func:`write_report` writes one line per policy outcome and one summary line. In the function
(``structured=True``) each line is one JSON object on stdout, which FC forwards to SLS verbatim
(the root logger would prefix its own time and request id, so a line would not be JSON): the FC
request id, trigger, event key, policy, cluster, outcome, add, task id, request id, reason. For
the CLI the same lines are plain text through the ``edgescaler`` logger. Nothing in them is
secret: they are built from the report, whose texts are redacted.

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

import json
import logging
import sys
from typing import IO, Any

from edgescaler.report import OutcomeCode, RunReport
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


_log = logging.getLogger("edgescaler")


def report_lines(report: RunReport, request_id: str | None) -> list[dict[str, Any]]:
    """The structured lines of ``report``: one per outcome, then the summary."""
    base = {
        "fc_request_id": request_id,
        "trigger": report.trigger,
        "event_key": report.event_key,
        "dry_run": report.dry_run,
    }
    summary = report.to_dict()  # once: each outcome's dict (and decision) is built here
    lines: list[dict[str, Any]] = []
    for o, d in zip(report.outcomes, summary["outcomes"], strict=True):
        lines.append(
            {
                "level": "ERROR" if o.outcome == OutcomeCode.ERROR else "INFO",
                **base,
                "policy": d["policy"],
                "cluster_id": d["cluster_id"],
                "outcome": d["outcome"],
                "add": d["add"],
                "task_id": d["task_id"],
                "request_id": d["request_id"],
                "reason": d["reason"],
            }
        )
    lines.append(
        {
            "level": "ERROR" if report.error else "INFO",
            **base,
            "summary": summary["summary"],
            "policies": len(report.outcomes),
            "nodes_added": sum(o.add for o in report.outcomes if o.outcome == OutcomeCode.SCALED),
            "counts": report.counts(),
            "error": summary["error"],
            "note": summary["note"],
        }
    )
    return lines


def write_report(
    report: RunReport,
    *,
    structured: bool,
    request_id: str | None = None,
    stream: IO[str] | None = None,
) -> None:
    """Log ``report``: JSON lines on ``stream`` (stdout) when ``structured``, else text lines."""
    if structured:
        out = stream or sys.stdout
        for line in report_lines(report, request_id):
            out.write(redact(json.dumps(line, ensure_ascii=False)) + "\n")
        out.flush()
        return
    for o in report.outcomes:
        level = logging.ERROR if o.outcome == OutcomeCode.ERROR else logging.INFO
        _log.log(level, "%s", o.log_line())
    _log.log(logging.ERROR if report.error else logging.INFO, "%s", report.summary_line())
