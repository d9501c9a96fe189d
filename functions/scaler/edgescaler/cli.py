"""The ``edgescaler`` command.

Verbs: ``validate PATH...`` · ``plan`` (dry run with explanations; writes nothing) ·
``run --event FILE|-`` (exactly the FC handler's code path, locally) · ``history`` ·
``reconcile`` (log vs cloud drift) · ``package`` (the FC code zip) · ``emulator`` (the local
CS API + Prometheus stand-in) · ``demo`` · ``invoke`` (the deployed function, through FC's API) ·
``replay`` (a load trace through a policy, scored) · ``test-policies`` (run the
``NAME.test.yaml`` cases beside policies).

Exit status: 0 when the command completed (also when nothing was scaled); 2 with a one-line
reason on bad input or configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgescaler import __version__, logs
from edgescaler.errors import EdgescalerError, PolicyError
from edgescaler.outside import message

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


def _fail(text: str) -> int:
    print(f"edgescaler: {message(text)}", file=sys.stderr)
    return EXIT_BAD_INPUT


def cmd_validate(args: argparse.Namespace) -> int:
    from edgescaler import policyfile

    try:
        policies = policyfile.load(args.paths)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        n = len(exc.problems)
        print(f"edgescaler: {n} problem{'s' if n != 1 else ''} found", file=sys.stderr)
        return EXIT_BAD_INPUT
    for p in policies:
        print(f"ok  {p.name}  cluster={p.cluster_id} region={p.region} rules={len(p.rules)}")
    return EXIT_OK


def _read_event(source: str | None) -> bytes:
    if source is None:
        return b""
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise EdgescalerError(f"--event {source}: {exc.strerror}") from None


def format_report(rep: dict[str, Any]) -> str:
    """Human-readable report: one block per policy with the decision's reasoning.

    It reads the report's JSON form — the documented contract (README, "The run report") —
    because that is also what ``invoke`` gets back from a deployed function: one view of one
    contract, for local runs and remote invocations alike.
    """
    lines = []
    if rep.get("error"):
        return f"edgescaler: {rep['error']}"
    for o in rep["outcomes"]:
        head = f"{o['policy']:<20} {o['outcome']:<20}"
        if o["add"]:
            head += f" +{o['add']}"
        if o["task_id"]:
            head += f"  task={o['task_id']}"
        lines.append(head)
        lines.append(f"    {o['reason']}")
        d = o.get("decision")
        if d:
            for name, r in d["readings"].items():
                lines.append(f"    reading {name} = {r['value']:.4g} at {r['timestamp']}")
            for r in d["rules"]:
                lines.append(f"    rule {r['rule']} {r['type']}({r['metric']}): {r['detail']}")
            for c in d["clamps"]:
                lines.append(
                    f"    clamp {c['limit']}: {c['before']} -> {c['after']} ({c['detail']})"
                )
    lines.append(rep["summary"])
    return "\n".join(lines)


def _run_event(args: argparse.Namespace, *, force_dry_run: bool) -> int:
    from edgescaler.handler import execute

    try:
        event = _read_event(args.event)
    except EdgescalerError as exc:
        return _fail(str(exc))
    if getattr(args, "policy", None):
        if event.strip():
            return _fail("give either --event or --policy, not both")
        event = json.dumps({"policies": args.policy}).encode()
    report = execute(event, None, force_dry_run=force_dry_run)
    rep = report.to_dict()
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return EXIT_BAD_INPUT if report.error else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    return _run_event(args, force_dry_run=args.dry_run)


def cmd_plan(args: argparse.Namespace) -> int:
    return _run_event(args, force_dry_run=True)


def cmd_history(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from edgescaler.runtime import Runtime
    from edgescaler.settings import Settings

    try:
        settings = Settings.from_env(os.environ)
        runtime = Runtime(settings, os.environ, None, lambda: datetime.now(timezone.utc))
        try:
            store = runtime.open_store()
            acts = store.history(cluster_id=args.cluster, policy=args.policy, limit=args.limit)
        finally:
            runtime.close()
    except EdgescalerError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps([a.to_dict() for a in acts], indent=2))
        return EXIT_OK
    if not acts:
        print("no activities recorded")
        return EXIT_OK
    print(
        f"{'created (UTC)':<20} {'cluster':<34} {'#':>4} {'policy':<18} {'add':>4} "
        f"{'status':<10} {'task':<28} reason"
    )
    for a in acts:
        why = a.explanation
        print(
            f"{a.created_at.strftime('%Y-%m-%d %H:%M:%S'):<20} {a.cluster_id:<34} {a.seq:>4} "
            f"{a.policy:<18} {a.add:>4} {a.status:<10} {a.task_id or '-':<28} {why}"
        )
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from edgescaler import drift, policyfile
    from edgescaler.runtime import Runtime
    from edgescaler.settings import Settings

    now = datetime.now(timezone.utc)
    try:
        settings = Settings.from_env(os.environ)
        policies = policyfile.load([settings.policy_dir])
        if args.policy:
            policies = [p for p in policies if p.name in set(args.policy)]
        runtime = Runtime(settings, os.environ, None, lambda: now)
        try:
            views = drift.report(
                policies, runtime.open_store(), runtime.cloud_for, now=now, limit=args.limit
            )
        finally:
            runtime.close()
    except EdgescalerError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps([v.to_dict() for v in views], indent=2))
    else:
        print(drift.format_views(views))
    return EXIT_OK


def cmd_invoke(args: argparse.Namespace) -> int:
    """Invoke the deployed function with a manual event and print what it answered."""
    from datetime import datetime, timezone

    from edgescaler import invoke
    from edgescaler.cloud import credentials as creds_mod
    from edgescaler.errors import ConfigError, InvokeError

    settings = invoke.InvokeSettings.from_env(os.environ)
    credentials = creds_mod.from_env(os.environ)
    if credentials is None:
        raise ConfigError(
            "no credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET "
            "(and ALIBABA_CLOUD_SECURITY_TOKEN for STS) of a principal allowed fc:InvokeFunction"
        )
    request_id = invoke.new_request_id(datetime.now(timezone.utc))
    event = invoke.manual_event(args.policy, args.dry_run, request_id)
    invoker = invoke.build_invoker(settings, credentials)
    try:
        result = invoker.invoke(event, asynchronous=args.async_)
    finally:
        invoker.close()
    fc_id = result.request_id or "-"
    if args.async_:
        if args.json:
            print(
                json.dumps(
                    {
                        "function": settings.target,
                        "request_id": result.request_id,
                        "event_request_id": request_id,
                        "async": True,
                    }
                )
            )
        else:
            print(
                f"{fc_id}  (FC request id of the async invocation of {settings.target}; "
                f"event request_id {request_id})"
            )
        return EXIT_OK
    report = invoke.report_from(result, settings.target)
    print(
        f"edgescaler: invoked {settings.target}: FC request id {fc_id}, event request_id "
        f"{request_id}",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        try:
            print(format_report(report))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # another version's
            raise InvokeError(
                f"function {settings.target} answered a run report this edgescaler cannot "
                f"show ({type(exc).__name__} {exc}); --json prints it as it came",
                code="bad_response",
                request_id=result.request_id,
            ) from None
    return EXIT_BAD_INPUT if report.get("error") else EXIT_OK


def cmd_emulator(args: argparse.Namespace) -> int:
    from edgescaler.emulator import cli as emulator_cli

    return emulator_cli.run_cli(args)


def cmd_package(args: argparse.Namespace) -> int:
    from edgescaler import package

    store = "s3" if args.with_s3 else args.store
    return package.main(
        out=args.out,
        policies=args.policies,
        store=store,
        python=args.python,
        bytecode=not args.no_bytecode,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from edgescaler import demo

    return demo.main(json_output=args.json)


def cmd_replay(args: argparse.Namespace) -> int:
    from edgescaler.replay import command

    return command.run(args)


def cmd_test_policies(args: argparse.Namespace) -> int:
    from edgescaler import policytest

    return policytest.main(args.paths, verbose=args.verbose_cases)


def _positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (a --limit of 0 or -1 read as "all" or
    dropped the oldest entry)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text[:20]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgescaler",
        description="Add ENS edge workers to ACK Edge clusters from Prometheus load.",
    )
    parser.add_argument("--version", action="version", version=f"edgescaler {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="validate policy files or directories")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_validate)

    for name, func, helptext in (
        ("plan", cmd_plan, "dry run: show what each policy would do, and why (writes nothing)"),
        ("run", cmd_run, "run the FC handler's code path locally with an event"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--event", metavar="FILE|-", help="event JSON file, or - for stdin")
        if name == "plan":
            p.add_argument("--policy", action="append", metavar="NAME", help="only this policy")
        else:
            p.add_argument("--dry-run", action="store_true", help="do not claim or scale out")
        p.add_argument("--json", action="store_true", help="print the run report as JSON")
        p.set_defaults(func=func)

    p = sub.add_parser("history", help="recorded scale-out activities, newest first")
    p.add_argument("--cluster", metavar="ID")
    p.add_argument("--policy", metavar="NAME")
    p.add_argument("--limit", type=_positive_int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("package", help="build the FC code package from cp310 manylinux wheels")
    p.add_argument("--out", default="build", help="output directory (default: build)")
    p.add_argument("--policies", default="policies", help="policy directory to include")
    p.add_argument(
        "--store",
        choices=("oss", "s3", "sqlite"),
        default="oss",
        help="the store the function will use: oss and sqlite need nothing more, "
        "s3 adds botocore with only its S3 model (default: oss)",
    )
    p.add_argument("--with-s3", action="store_true", help="same as --store s3")
    p.add_argument(
        "--python",
        metavar="PATH",
        help="the CPython 3.10 that compiles the .pyc (default: this one if 3.10, else "
        "python3.10 on PATH or a pyenv 3.10)",
    )
    p.add_argument("--no-bytecode", action="store_true", help="no .pyc: every cold start compiles")
    p.set_defaults(func=cmd_package)

    p = sub.add_parser("reconcile", help="compare the activity log with the cloud; print the drift")
    p.add_argument("--policy", action="append", metavar="NAME", help="only this policy's cluster")
    p.add_argument(
        "--limit", type=_positive_int, default=100, help="activities per cluster to check"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser(
        "invoke",
        help="invoke the deployed function (FC 3.0 or 2.0) and print its run report",
        description="Settings: EDGESCALER_FC_API, _FUNCTION, _SERVICE (FC 2.0), _REGION, "
        "_ACCOUNT_ID, _ENDPOINT, _QUALIFIER, _TIMEOUT; credentials: ALIBABA_CLOUD_*.",
    )
    p.add_argument("--policy", action="append", metavar="NAME", help="only this policy")
    p.add_argument("--dry-run", action="store_true", help="ask the function not to scale out")
    p.add_argument(
        "--async", dest="async_", action="store_true", help="do not wait; print FC's request id"
    )
    p.add_argument("--json", action="store_true", help="print the run report as JSON")
    p.set_defaults(func=cmd_invoke)

    p = sub.add_parser(
        "emulator", help="serve the local CS API emulator (and a scripted Prometheus)"
    )
    # Cheap: declares the options without importing the server (edgescaler/emulator/cli.py).
    from edgescaler.emulator import cli as emulator_cli

    emulator_cli.add_cli_arguments(p)
    p.set_defaults(func=cmd_emulator)

    p = sub.add_parser(
        "demo", help="run the scaler against the emulator through a scripted load rise"
    )
    p.add_argument("--json", action="store_true", help="print every run report as JSON")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "replay", help="replay a load trace through a policy; score it against baselines"
    )
    from edgescaler.replay import options as replay_options

    replay_options.add_arguments(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "test-policies", help="run the policy tests (NAME.test.yaml) beside policy files"
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="directories or *.test.yaml files")
    p.add_argument("-v", dest="verbose_cases", action="store_true", help="one line per case")
    p.set_defaults(func=cmd_test_policies)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logs.install()  # -v is edgescaler's debug output, never botocore's headers
    try:
        code: int = args.func(args)
    except EdgescalerError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one redacted line (the traceback with -v), never a dump
        logging.getLogger("edgescaler").debug("internal error", exc_info=True)
        print(
            f"edgescaler: {message(f'internal error: {type(exc).__name__}: {exc}')}",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return code


if __name__ == "__main__":
    sys.exit(main())
