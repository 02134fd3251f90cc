"""Offline checking: the same engine, fed from trace files (finished, or still being written)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import UsageError
from ..invariants import Invariant, Violation
from ..relations.base import Relation
from ..trace.reader import iter_run, trace_files
from .engine import CheckEngine
from .result import CheckResult, merge_results

__all__ = ["check_run", "check_runs"]

OnViolation = Callable[[Violation], None]


def check_run(path: str | Path, invariants: Sequence[Invariant],
              relations: Mapping[str, Relation], *, follow: bool = False,
              idle_timeout: float | None = None, poll: float = 0.2,
              on_violation: OnViolation | None = None) -> CheckResult:
    """Check one run directory (or trace file). ``on_violation`` sees each new violation as
    soon as it is found, which is what the follower prints while the run goes on."""
    p = Path(path)
    if not follow:
        files = trace_files(p)
        if not files:
            raise UsageError(f"{p}: no trace files (*.tctrace) here; record a run with "
                             "`traincheck run -o DIR script.py`")
    engine = CheckEngine(invariants, relations)
    names: dict[int, str] = engine.source_names
    known: list[Path] = []
    for rec in iter_run(p, follow=follow, poll=poll, idle_timeout=idle_timeout):
        if rec.source not in names:
            if not known or len(known) <= rec.source:
                known = trace_files(p) if (p.exists() or not follow) else []
            names[rec.source] = known[rec.source].name if rec.source < len(known) else \
                str(rec.source)
        for v in engine.feed_record(rec):
            if on_violation is not None:
                on_violation(v)
    for v in engine.finish():
        if on_violation is not None:
            on_violation(v)
    result = engine.result()
    result.traces = [str(p)]
    return result


def check_runs(paths: Sequence[str | Path], invariants: Sequence[Invariant],
               relations: Mapping[str, Relation], **kw) -> CheckResult:
    """Check each run separately (a run's ranks are compared with each other, never with
    another run's) and merge the outcomes."""
    return merge_results(check_run(p, invariants, relations, **kw) for p in paths)
