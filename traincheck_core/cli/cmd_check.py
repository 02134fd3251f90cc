"""``traincheck check``: check recorded (or still running) runs against invariants."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from ..check.offline import check_run, check_runs
from ..check.online import load_all
from ..check.plan import load_relations
from ..check.sinks import violation_line
from ..errors import UsageError
from ..invariants import Violation

NAME = "check"
HELP = ("check trace directories against invariants; exit 0 when every triggered invariant "
        "held, 1 when any was violated, 2 on bad input")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("traces", nargs="+", metavar="TRACE_DIR",
                   help="run directories (or trace files); each is checked on its own")
    p.add_argument("-i", "--invariants", action="append", default=[], metavar="FILE",
                   required=True, help="invariants file (repeatable)")
    p.add_argument("-p", "--plugin", action="append", default=[], metavar="NAME",
                   help="plugins whose relation templates to load (default: all installed)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument("--follow", action="store_true",
                   help="check a run another process is still writing; print violations as "
                        "they appear, finish when every trace is closed")
    p.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                   help="with --follow: give up after this long without new events")
    p.add_argument("--all", action="store_true", help="also list invariants that held")


def main(args: argparse.Namespace) -> int:
    invariants = load_all(args.invariants)
    relations = load_relations(
        [x.strip() for p in args.plugin for x in p.split(",") if x.strip()])
    if args.follow and len(args.traces) != 1:
        raise UsageError("--follow checks one run directory at a time")
    for t in args.traces:
        if not args.follow and not Path(t).exists():
            raise UsageError(f"{t}: no such trace file or run directory")

    def live(v: Violation) -> None:
        print(f"traincheck: {violation_line(v)}", file=sys.stderr, flush=True)

    if args.follow:
        result = check_run(args.traces[0], invariants, relations, follow=True,
                           idle_timeout=args.idle_timeout, on_violation=live)
    else:
        result = check_runs(args.traces, invariants, relations)
    result.invariants_file = [str(f) for f in args.invariants]
    _output(args, result, {i.id: i for i in invariants})
    return result.exit_code()


def _output(args: argparse.Namespace, result, invariants) -> None:
    from ..report.html import render_html
    from ..report.terminal import format_summary

    if args.html:
        Path(args.html).write_text(render_html(result, invariants), encoding="utf-8")
    if args.json:
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    else:
        print(format_summary(result, invariants, show_held=args.all))
        if args.html:
            print(f"HTML report: {args.html}")
