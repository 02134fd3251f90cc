"""``traincheck inspect``: what a trace holds, or every event as JSON lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from ..errors import TraceCorruptError
from ..trace.reader import iter_run, trace_files
from .summary import print_run_summary, summarize_run

NAME = "inspect"
HELP = "summarize a trace file or run directory (counts by event kind and API), or dump it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("trace", help="a trace file or a run directory")
    p.add_argument("--dump", action="store_true",
                   help="print every event as one JSON object per line, merged in time order")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--top", type=int, default=15, help="how many APIs to list (default 15)")


def _as_dict(obj: object) -> object:
    if isinstance(obj, msgspec.Struct):
        d: dict[str, object] = {}
        if obj.__struct_config__.tag:
            d["kind"] = obj.__struct_config__.tag
        d.update({f: _as_dict(getattr(obj, f)) for f in obj.__struct_fields__})
        return d
    if isinstance(obj, dict):
        return {k: _as_dict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_as_dict(v) for v in obj]
    return obj


def main(args: argparse.Namespace) -> int:
    path = Path(args.trace)
    files = trace_files(path)
    if not files:
        print(f"traincheck: {path}: no trace files here", file=sys.stderr)
        return 2
    if args.dump:
        enc = msgspec.json.Encoder()
        out = sys.stdout.buffer
        names = [f.name for f in files]
        for rec in iter_run(path):
            d = _as_dict(rec.event)
            d["file"] = names[rec.source]  # type: ignore[index]
            out.write(enc.encode(d) + b"\n")
        return 0
    summaries = summarize_run(path)
    if args.json:
        rows = [{"file": str(s.path), "rank": s.rank, "bytes": s.bytes,
                 "events": dict(s.kinds), "apis": dict(s.apis.most_common(args.top)),
                 "variables": len(s.variables), "steps": s.steps, "complete": s.finished,
                 "partial_tail_bytes": s.partial_tail, "error": s.error} for s in summaries]
        sys.stdout.write(msgspec.json.encode(rows).decode() + "\n")
    else:
        print_run_summary(path, sys.stdout, top=args.top)
    corrupt = [s.error for s in summaries if s.error]
    for e in corrupt:
        print(f"traincheck: error: {e}", file=sys.stderr)
    return 2 if corrupt else 0


__all__ = ["main", "add_arguments", "TraceCorruptError"]
