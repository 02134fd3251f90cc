"""The inference engine: traces in, invariants out. See "Inference" in
``docs/architecture.md`` and ``benchmarks/inference/bench_infer.py``.

Two phases, both spread over a process pool when ``jobs > 1``:

1. **collect** — one task per (run, group of relations): the run's trace files are read and
   merged in time order, assembled into analysis items, and streamed through each relation's
   collector into an :class:`~traincheck_core.relations.common.Accumulator`. Nothing is kept
   per event: collectors hold per-step windows and the accumulators hold *distinct* examples
   with counts, so memory follows the variety of the run, not its length.
2. **decide** — accumulators of every run are merged (in run-id order) and each hypothesis
   family gets its preconditions inferred, one task per chunk of families.

The output is a pure function of the trace contents: runs, families and hypotheses are
processed in sorted order and every search is deterministic, so the same traces give a
byte-identical invariants file whatever ``jobs`` is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..analysis.assembler import Assembler
from ..errors import TraceCorruptError, TraincheckError, UsageError
from ..invariants import Invariant
from ..relations.base import Relation, RunItems
from ..relations.common import Accumulator, TemplateRelation
from ..trace.reader import iter_run, read_header, trace_files

__all__ = ["RunSpec", "InferResult", "find_runs", "infer_runs", "infer_paths"]

Progress = Callable[[str, int, int], None]


@dataclass
class RunSpec:
    """The trace files of one run (every rank), found by the ``run_id`` of their headers."""

    run_id: str
    files: list[Path]
    frameworks: dict[str, str] = field(default_factory=dict)


@dataclass
class RelationStats:
    hypotheses: int = 0
    invariants: int = 0
    seconds: float = 0.0


@dataclass
class InferResult:
    invariants: list[Invariant]
    runs: list[RunSpec]
    relations: dict[str, RelationStats]
    events: int = 0
    seconds: float = 0.0

    def header_meta(self) -> dict[str, Any]:
        """File header fields: what produced the file (no timestamps: output is reproducible)."""
        return {"generated_by": f"traincheck {__version__}",
                "runs": [r.run_id for r in self.runs],
                "relations": sorted(self.relations)}


def find_runs(paths: Sequence[str | os.PathLike[str]]) -> list[RunSpec]:
    """Group the trace files under ``paths`` by run id (a run's ranks share one)."""
    runs: dict[str, RunSpec] = {}
    for p in paths:
        files = trace_files(p)
        if not files:
            raise UsageError(f"{p}: no trace files (*.tctrace) here; record a reference run "
                             "with `traincheck run -o DIR script.py`")
        for f in files:
            h = read_header(f)  # TraceCorruptError names the file and byte offset
            spec = runs.setdefault(h.run_id, RunSpec(h.run_id, []))
            if f not in spec.files:
                spec.files.append(f)
            for fw, ver in sorted(h.frameworks.items()):
                spec.frameworks.setdefault(fw, ver)
    for spec in runs.values():
        spec.files.sort()
    return [runs[k] for k in sorted(runs)]


# ----------------------------------------------------------------------------- collect


def _collect(spec: RunSpec, rels: list[Relation]) -> tuple[dict[str, Any], int]:
    """Stream one run through the collectors of ``rels``. Template relations give
    accumulators; other (plugin) relations get the run's items and infer on their own."""
    asm = Assembler()
    templates = [r for r in rels if isinstance(r, TemplateRelation)]
    others = [r for r in rels if not isinstance(r, TemplateRelation)]
    cols = [(r.name, r.collector(), Accumulator()) for r in templates]
    kept: list[Any] = []
    events = 0
    for rec in iter_run(spec.files):
        events += 1
        for item in asm.feed(rec):
            if others:
                kept.append(item)
            for _, col, acc in cols:
                obs = col.feed(item)
                if obs:  # most collectors ignore most items
                    acc.add(spec.run_id, obs)
    out: dict[str, Any] = {}
    for name, col, acc in cols:
        acc.add(spec.run_id, col.finish())
        out[name] = acc
    if others:
        run = RunItems(spec.run_id, kept, dict(asm.procs), dict(spec.frameworks))
        for r in others:
            out[r.name] = r.infer([run])
    return out, events


def _collect_task(spec: RunSpec, rels: list[Relation]) -> tuple[str, Any]:
    # Errors cross the process boundary as text: our exceptions do not all pickle.
    try:
        return "ok", _collect(spec, rels)
    except TraceCorruptError as exc:
        return "error", str(exc)
    except TraincheckError as exc:
        return "error", str(exc)


def _decide_task(rel: TemplateRelation, acc: Accumulator,
                 frameworks: dict[str, dict[str, str]]) -> list[Invariant]:
    return rel.decide(acc, frameworks)


def _chunks(acc: Accumulator, n: int) -> list[Accumulator]:
    """Split an accumulator by family into at most ``n`` parts of similar size."""
    fams = sorted(acc.hyps, key=repr)
    if n <= 1 or len(fams) <= 1:
        return [acc]
    parts = [Accumulator() for _ in range(min(n, len(fams)))]
    sizes = [0] * len(parts)
    for fam in sorted(fams, key=lambda f: (-len(acc.examples.get(f, ())), repr(f))):
        i = sizes.index(min(sizes))
        parts[i].add_part(acc.part(fam))
        sizes[i] += len(acc.examples.get(fam, ())) + 1
    return parts


def _groups(rels: list[Relation], n: int) -> list[list[Relation]]:
    n = max(1, min(n, len(rels)))
    return [rels[i::n] for i in range(n)]


def infer_runs(runs: list[RunSpec], relations: Sequence[Relation], *, jobs: int = 1,
               progress: Progress | None = None) -> InferResult:
    """Infer invariants of ``relations`` from ``runs``."""
    t_start = time.perf_counter()
    rels = sorted(relations, key=lambda r: r.name)
    stats = {r.name: RelationStats() for r in rels}
    jobs = max(1, jobs)
    groups = _groups(rels, jobs if len(runs) < jobs else 1)
    tasks = [(spec, g) for spec in runs for g in groups]
    pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 and len(tasks) > 1 else None
    try:
        results = _run(pool, _collect_task, tasks, "collecting", progress)
        merged: dict[str, Any] = {}
        events = 0
        for (_spec, g), (status, payload) in zip(tasks, results, strict=True):
            if status == "error":
                raise TraincheckError(f"{payload}; re-record the run or leave this file out")
            parts, n = payload
            if len(groups) == 1 or g is groups[0]:
                events += n
            for name in sorted(parts):
                part = parts[name]
                if isinstance(part, Accumulator):
                    merged.setdefault(name, Accumulator()).merge(part)
                else:
                    merged.setdefault(name, []).extend(part)
        frameworks = {r.run_id: dict(r.frameworks) for r in runs}
        invariants = _decide(pool, rels, merged, frameworks, stats, jobs, progress)
    finally:
        if pool is not None:
            pool.shutdown()
    return InferResult(invariants=invariants, runs=runs, relations=stats, events=events,
                       seconds=time.perf_counter() - t_start)


def _decide(pool: ProcessPoolExecutor | None, rels: list[Relation], merged: dict[str, Any],
            frameworks: dict[str, dict[str, str]], stats: dict[str, RelationStats], jobs: int,
            progress: Progress | None) -> list[Invariant]:
    tasks = []
    for r in rels:
        part = merged.get(r.name)
        if isinstance(part, Accumulator) and isinstance(r, TemplateRelation):
            stats[r.name].hypotheses = sum(len(h) for h in part.hyps.values())
            # a template that decides family by family can be split across workers; one
            # that overrides decide() may look at several families at once (VarConstant
            # groups variables): it gets its accumulator whole, or results would depend on jobs
            n = jobs if type(r).decide is TemplateRelation.decide else 1
            tasks += [(r, chunk, frameworks) for chunk in _chunks(part, n)]
    results = _run(pool, _decide_task, tasks, "deciding", progress)
    found: dict[str, Invariant] = {}
    for r in rels:
        part = merged.get(r.name)
        if isinstance(part, list):  # a plugin relation that inferred by itself
            stats[r.name].hypotheses = len(part)
            for inv in part:
                found.setdefault(inv.id, inv)
    for _task, invs in zip(tasks, results, strict=True):
        for inv in invs:
            found.setdefault(inv.id, inv)  # same id: same relation, params and precondition
    for inv in found.values():
        if inv.relation in stats:
            stats[inv.relation].invariants += 1
    return [found[k] for k in sorted(found)]


def _run(pool: ProcessPoolExecutor | None, fn: Callable, tasks: list[tuple],
         what: str, progress: Progress | None) -> list[Any]:
    if progress is not None:
        progress(what, 0, len(tasks))
    if pool is None:
        out = []
        for i, t in enumerate(tasks):
            out.append(fn(*t))
            if progress is not None:
                progress(what, i + 1, len(tasks))
        return out
    futures = [pool.submit(fn, *t) for t in tasks]
    out = []
    for i, f in enumerate(futures):
        out.append(f.result())
        if progress is not None:
            progress(what, i + 1, len(tasks))
    return out


def infer_paths(paths: Sequence[str | os.PathLike[str]], relations: Sequence[Relation], *,
                jobs: int = 1, progress: Progress | None = None) -> InferResult:
    """Find the runs under ``paths`` and infer from all of them."""
    return infer_runs(find_runs(paths), relations, jobs=jobs, progress=progress)
