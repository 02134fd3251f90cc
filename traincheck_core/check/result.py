"""What a check found, per invariant: the shared result of online and offline checking.

The same structures are written by an online session at exit (``checkresult-*.json`` in the
run directory), printed by ``traincheck check --json`` and rendered by the reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec

from ..invariants import Invariant, Violation

__all__ = ["Status", "InvariantOutcome", "CheckResult", "merge_results", "STATUS_ORDER"]

Status = Literal["violated", "held", "not-triggered", "not-checked", "error"]
# When outcomes of one invariant from several processes or runs are merged, the most
# alarming status wins.
STATUS_ORDER: dict[str, int] = {"violated": 0, "error": 1, "held": 2, "not-triggered": 3,
                                "not-checked": 4}


class InvariantOutcome(msgspec.Struct, kw_only=True):
    """One invariant after a check."""

    id: str
    relation: str
    text: str = ""
    hint: str = ""
    status: Status = "not-triggered"
    checked: int = 0  # how often its precondition held
    occurrences: int = 0  # violations reported by its checker (repeats included)
    steps_violated: int = 0  # distinct (process, step) windows with at least one violation
    first_step: int | None = None
    ranks: list[int] = []
    why_not: str = ""  # why it never triggered / was not checked
    firsts: list[Violation] = []  # the first violation on each rank
    per_step: dict[int, int] = {}  # step -> violations (repeats included)

    @property
    def repeats(self) -> int:
        return max(0, self.occurrences - len(self.firsts))


class CheckResult(msgspec.Struct, kw_only=True):
    """Everything one check produced."""

    traces: list[str] = []
    invariants_file: list[str] = []
    events: int = 0
    processes: int = 0
    frameworks: dict[str, list[str]] = {}  # framework versions seen in the checked run(s)
    outcomes: list[InvariantOutcome] = []
    check_seconds: float = 0.0  # CPU/wall time spent checking (online: by the checker)

    def by_status(self, status: str) -> list[InvariantOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def violated(self) -> list[InvariantOutcome]:
        return self.by_status("violated")

    def timeline(self) -> dict[int, int]:
        """Violations per step, summed over invariants."""
        out: dict[int, int] = {}
        for o in self.outcomes:
            for step, n in o.per_step.items():
                out[step] = out.get(step, 0) + n
        return dict(sorted(out.items()))

    def exit_code(self) -> int:
        return 1 if self.violated else 0


def outcome_for(inv: Invariant) -> InvariantOutcome:
    return InvariantOutcome(id=inv.id, relation=inv.relation, text=inv.text, hint=inv.hint)


def _merge_two(a: InvariantOutcome, b: InvariantOutcome) -> InvariantOutcome:
    status = min(a.status, b.status, key=lambda s: STATUS_ORDER[s])
    steps = [s for s in (a.first_step, b.first_step) if s is not None]
    per_step = dict(a.per_step)
    for k, v in b.per_step.items():
        per_step[k] = per_step.get(k, 0) + v
    seen = {(v.rank, v.source) for v in a.firsts}
    firsts = list(a.firsts) + [v for v in b.firsts if (v.rank, v.source) not in seen]
    why = merge_why_not(a.why_not, b.why_not)
    return InvariantOutcome(
        id=a.id, relation=a.relation, text=a.text or b.text, hint=a.hint or b.hint,
        status=status, checked=a.checked + b.checked, occurrences=a.occurrences + b.occurrences,
        steps_violated=a.steps_violated + b.steps_violated,
        first_step=min(steps) if steps else None, ranks=sorted(set(a.ranks) | set(b.ranks)),
        why_not="" if status in ("violated", "held") else why, firsts=firsts, per_step=per_step)


NOT_CALLED, NOT_OBSERVED = "API never called: ", "variable not observed: "


def merge_why_not(a: str, b: str) -> str:
    """Why an invariant never triggered in any of several processes, from their reasons.

    A process that never called an API (a launcher, a DataLoader worker, a helper) says so,
    but the run as a whole did call it if another process did: the reasons of the processes
    that got furthest stand (an API not called < a variable not observed < anything else),
    each said once; of "API never called" reasons only the APIs no process called remain."""
    parts = list(dict.fromkeys(x for why in (a, b) for x in why.split("; ") if x))

    def rank(part: str) -> int:
        return 0 if part.startswith(NOT_CALLED) else 1 if part.startswith(NOT_OBSERVED) else 2

    top = max((rank(x) for x in parts), default=2)
    parts = [x for x in parts if rank(x) == top]
    if top == 0 and len(parts) > 1:
        lists = [set(x.removeprefix(NOT_CALLED).split(", ")) for x in parts]
        common = sorted(set.intersection(*lists))
        if common:  # (none in common: each process missed another API; all are said)
            parts = [NOT_CALLED + ", ".join(common)]
    return "; ".join(parts)


def merge_results(results: Iterable[CheckResult]) -> CheckResult:
    """Combine the results of several processes or runs checked against the same invariants."""
    out = CheckResult()
    by_id: dict[str, InvariantOutcome] = {}
    order: list[str] = []
    for r in results:
        out.traces += [t for t in r.traces if t not in out.traces]
        out.invariants_file += [f for f in r.invariants_file if f not in out.invariants_file]
        out.events += r.events
        out.processes += r.processes
        out.check_seconds += r.check_seconds
        for fw, versions in r.frameworks.items():
            have = out.frameworks.setdefault(fw, [])
            have += [v for v in versions if v not in have]
        for o in r.outcomes:
            if o.id in by_id:
                by_id[o.id] = _merge_two(by_id[o.id], o)
            else:
                by_id[o.id] = o
                order.append(o.id)
    out.outcomes = [by_id[i] for i in order]
    return out
