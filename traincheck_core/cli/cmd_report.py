"""``traincheck report``: a report of an online-checked run directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from ..check.online import load_all
from ..errors import UsageError
from ..report.html import render_html
from ..report.load import load_run_result, result_files, with_invariants
from ..report.terminal import format_summary
from ..trace.reader import trace_files

NAME = "report"
HELP = ("build an HTML report (and print a summary) from a run directory's violations and "
        "check results; with -i and no online results, re-check its traces")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="the output directory of `traincheck run`")
    p.add_argument("-i", "--invariants", action="append", default=[], metavar="FILE",
                   help="the invariants the run was checked against (statements, hints, and "
                        "which ones were never triggered)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the HTML report here "
                   "(default: RUN_DIR/report.html)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def main(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    invariants = load_all(args.invariants) if args.invariants else []
    if invariants and not result_files(run_dir) and trace_files(run_dir):
        from ..check.offline import check_run
        from ..check.plan import load_relations

        result = check_run(run_dir, invariants, load_relations())
    else:
        result = load_run_result(run_dir)
    if invariants:
        result = with_invariants(result, invariants)
    result.invariants_file = [str(f) for f in args.invariants] or result.invariants_file
    by_id = {i.id: i for i in invariants}
    out = Path(args.output) if args.output else run_dir / "report.html"
    out.write_text(render_html(result, by_id, title=f"traincheck report: {run_dir.name}"),
                   encoding="utf-8")
    if args.json:
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    else:
        print(format_summary(result, by_id))
        print(f"HTML report: {out}")
    return result.exit_code()
