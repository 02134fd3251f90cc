"""``traincheck infer``: learn invariants from healthy reference runs."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from typing import IO

from ..errors import UsageError
from ..infer.engine import InferResult, infer_paths
from ..invariants import write_invariants
from ..plugins.manager import make_plugin_manager
from ..relations.registry import all_relations

NAME = "infer"
HELP = "infer training invariants from trace directories of healthy reference runs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("traces", nargs="+", metavar="TRACE_DIR",
                   help="run directories (or trace files) recorded with `traincheck run`; "
                        "the ranks of one run are grouped by their run id")
    p.add_argument("-o", "--output", default="invariants.jsonl",
                   help="invariants file to write (JSON Lines; default invariants.jsonl)")
    p.add_argument("--relation", action="append", default=[], metavar="NAME",
                   help="only infer this relation template (repeatable); see --list")
    p.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: every core)")
    p.add_argument("--list", action="store_true", help="list the relation templates and exit")
    p.add_argument("--quiet", "-q", action="store_true", help="no summary table")


def _relations(names: list[str]):
    try:
        pm, _ = make_plugin_manager(None)
    except Exception:  # plugins are optional for inference: built-ins still work
        pm = None
    rels = all_relations(pm)
    if not names:
        return rels
    by_name = {r.name.lower(): r for r in rels}
    chosen = []
    for n in names:
        r = by_name.get(n.lower())
        if r is None:
            raise UsageError(f"unknown relation {n!r}; available: "
                             + ", ".join(sorted(r.name for r in rels)))
        chosen.append(r)
    return chosen


def _progress(out: IO[str]):
    if not out.isatty():
        return None

    def show(what: str, done: int, total: int) -> None:
        width = 24
        fill = width * done // max(total, 1)
        out.write(f"\rtraincheck infer: {what:<10} [{'#' * fill}{'.' * (width - fill)}] "
                  f"{done}/{total}")
        if done == total and what == "deciding":
            out.write("\n")
        out.flush()

    return show


def print_summary(res: InferResult, path: str, out: IO[str]) -> None:
    print(f"traincheck infer: {len(res.runs)} run(s), "
          f"{sum(len(r.files) for r in res.runs)} trace file(s), {res.events} events, "
          f"{res.seconds:.2f} s", file=out)
    print(f"  {'relation':<16}{'hypotheses':>12}{'invariants':>12}", file=out)
    for name in sorted(res.relations):
        st = res.relations[name]
        print(f"  {name:<16}{st.hypotheses:>12}{st.invariants:>12}", file=out)
    runs = Counter(len(i.runs) for i in res.invariants)
    agree = ", ".join(f"{n} run(s): {c}" for n, c in sorted(runs.items()))
    print(f"  {'total':<16}{sum(s.hypotheses for s in res.relations.values()):>12}"
          f"{len(res.invariants):>12}   supported by {agree or '-'}", file=out)
    print(f"traincheck infer: wrote {len(res.invariants)} invariants to {path}", file=out)


def main(args: argparse.Namespace) -> int:
    rels = _relations(args.relation)
    if args.list:
        for r in rels:
            print(f"{r.name:<16}{r.description}")
        return 0
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    res = infer_paths(args.traces, rels, jobs=args.jobs, progress=_progress(sys.stderr))
    write_invariants(args.output, res.invariants, res.header_meta())
    if not args.quiet:
        print_summary(res, args.output, sys.stderr)
    return 0
