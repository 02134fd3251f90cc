"""Summaries of a run directory, shared by ``traincheck run`` and ``traincheck inspect``."""

from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..errors import TraceCorruptError
from ..events import CallStart, Header, MetaUpdate, VarState
from ..trace.reader import TraceFile, trace_files


@dataclass
class FileSummary:
    path: Path
    header: Header | None = None
    bytes: int = 0
    kinds: Counter = field(default_factory=Counter)
    apis: Counter = field(default_factory=Counter)
    variables: set = field(default_factory=set)
    steps: int = 0
    rank: object = None
    finished: bool = False
    partial_tail: int = 0
    error: str | None = None


def summarize_file(path: Path) -> FileSummary:
    s = FileSummary(path=path, bytes=path.stat().st_size)
    tf = TraceFile(path)
    try:
        events = tf.read_all()
    except TraceCorruptError as exc:
        s.error = str(exc)
        return s
    s.header, s.finished, s.partial_tail = tf.header, tf.finished, tf.partial_tail
    s.rank = tf.header.rank if tf.header else None
    for ev in events:
        s.kinds[type(ev).__name__] += 1
        if isinstance(ev, CallStart):
            s.apis[ev.api] += 1
        elif isinstance(ev, VarState):
            s.variables.add(ev.name)
        elif isinstance(ev, MetaUpdate):
            step = ev.values.get("step")
            if isinstance(step, int):
                s.steps = max(s.steps, step)
            if "rank" in ev.values:
                s.rank = ev.values["rank"]
    return s


def summarize_run(path: Path) -> list[FileSummary]:
    return [summarize_file(f) for f in trace_files(path)]


def _state(f: FileSummary) -> str:
    if f.error:
        return f"CORRUPT: {f.error}"
    if f.finished:
        return "complete"
    if f.header is not None and _running_here(f.header):
        # e.g. multiprocessing's resource tracker, which exits just after the main process
        return "no end record yet (the process is still running)"
    return "no end record (process killed?)"


def _running_here(header: Header) -> bool:
    """Whether the process that writes this trace is still running on this host."""
    if header.host != socket.gethostname():
        return False
    try:
        os.kill(header.pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal
        return True
    return True


def print_run_summary(path: Path, out: IO[str], top: int = 10) -> None:
    """A short human summary: files, ranks, events by kind, busiest APIs, violations."""
    files = summarize_run(path) if path.exists() else []
    total = sum(f.bytes for f in files)
    print(f"traincheck: run directory {path}", file=out)
    print(f"traincheck: {len(files)} trace file(s), {total / 1e6:.2f} MB", file=out)
    kinds: Counter = Counter()
    apis: Counter = Counter()
    for f in files:
        state = _state(f)
        pid = f.header.pid if f.header else "?"
        print(f"  {f.path.name}: rank {f.rank}, pid {pid}, {sum(f.kinds.values())} events, "
              f"{f.steps} steps, {len(f.variables)} variables, {state}", file=out)
        kinds.update(f.kinds)
        apis.update(f.apis)
    if kinds:
        print("  events: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())), file=out)
    for api, n in apis.most_common(top):
        print(f"    {n:8d}  {api}", file=out)
    vfile = path / "violations.jsonl"
    if vfile.exists():
        n = sum(1 for line in vfile.open() if line.strip())
        print(f"traincheck: {n} violation(s) recorded in {vfile}", file=out)
