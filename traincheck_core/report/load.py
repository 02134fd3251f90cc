"""Rebuild a check result from a run directory: the per-process results an online session
wrote at exit, plus ``violations.jsonl`` for processes that died before writing one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec

from ..check.result import CheckResult, InvariantOutcome, merge_results
from ..check.sinks import read_violations
from ..errors import UsageError
from ..invariants import Invariant, Violation

__all__ = ["result_files", "load_run_result", "result_from_violations", "with_invariants"]

_DEC = msgspec.json.Decoder(CheckResult)


def result_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("checkresult-*.json"))


def _process_of(path: Path) -> str:
    host, _, pid = path.stem[len("checkresult-"):].rpartition("-")
    return f"{host}:{pid}"


def result_from_violations(violations: Sequence[Violation]) -> CheckResult:
    """Outcomes of the violated invariants only: what a violations file can tell."""
    by_id: dict[str, InvariantOutcome] = {}
    firsts: set[tuple[str, int | None, str | None]] = set()
    windows: set[tuple[str, str | None, int | None]] = set()
    for v in violations:
        o = by_id.setdefault(v.invariant, InvariantOutcome(
            id=v.invariant, relation=v.relation, hint=v.hint, status="violated"))
        o.occurrences += 1
        if v.step is not None:
            o.per_step[v.step] = o.per_step.get(v.step, 0) + 1
            o.first_step = v.step if o.first_step is None else min(o.first_step, v.step)
        if v.rank is not None and v.rank not in o.ranks:
            o.ranks = sorted([*o.ranks, v.rank])
        key = (v.invariant, v.rank, v.source if v.rank is None else None)
        if key not in firsts:
            firsts.add(key)
            o.firsts.append(v)
        win = (v.invariant, v.source, v.step)
        if win not in windows:
            windows.add(win)
            o.steps_violated += 1
    return CheckResult(outcomes=list(by_id.values()))


def load_run_result(run_dir: str | Path) -> CheckResult:
    """The merged result of every process of an online-checked run."""
    d = Path(run_dir)
    if not d.is_dir():
        raise UsageError(f"{d}: no such run directory")
    parts: list[CheckResult] = []
    covered: set[str] = set()
    for f in result_files(d):
        try:
            parts.append(_DEC.decode(f.read_bytes()))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UsageError(f"{f}: unreadable check result ({exc}); delete it to rebuild "
                             "the report from violations.jsonl") from None
        covered.add(_process_of(f))
    extra = [v for v in read_violations(d / "violations.jsonl") if v.source not in covered]
    if extra:
        parts.append(result_from_violations(extra))
    result = merge_results(parts)
    result.traces = [str(d)]
    return result


def with_invariants(result: CheckResult, invariants: Sequence[Invariant]) -> CheckResult:
    """Fill in statements and hints, and list deployed invariants the result does not mention."""
    by_id = {o.id: o for o in result.outcomes}
    for inv in invariants:
        o = by_id.get(inv.id)
        if o is None:
            result.outcomes.append(InvariantOutcome(
                id=inv.id, relation=inv.relation, text=inv.text, hint=inv.hint,
                status="not-checked", why_not="no check result for it in this run directory"))
            continue
        o.text = o.text or inv.text
        o.hint = o.hint or inv.hint
    return result
