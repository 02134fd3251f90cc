"""The terminal summary: a table of invariants by outcome, then diagnoses of violations."""

from __future__ import annotations

from collections.abc import Mapping

from ..check.result import STATUS_ORDER, CheckResult, InvariantOutcome
from ..invariants import Invariant
from .diagnosis import diagnose

__all__ = ["format_summary"]


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _ranks(o: InvariantOutcome) -> str:
    if not o.ranks:
        return "-"
    if len(o.ranks) > 4:
        return f"{o.ranks[0]}..{o.ranks[-1]} ({len(o.ranks)})"
    return ",".join(map(str, o.ranks))


def _table(rows: list[InvariantOutcome], width: int) -> list[str]:
    head = f"{'STATUS':<9} {'VIOL':>5} {'STEPS':>5} {'FIRST':>6} {'RANKS':<10} INVARIANT"
    text_w = max(20, width - len(head) + len("INVARIANT"))
    out = [head]
    for o in rows:
        first = "-" if o.first_step is None else str(o.first_step)
        what = o.text or o.id
        out.append(f"{o.status:<9} {o.occurrences:>5} {o.steps_violated:>5} {first:>6} "
                   f"{_cut(_ranks(o), 10):<10} {_cut(what, text_w)}")
    return out


def format_summary(result: CheckResult, invariants: Mapping[str, Invariant] | None = None,
                   *, width: int = 110, show_held: bool = False) -> str:
    """The human summary ``traincheck check`` prints."""
    invariants = invariants or {}
    outcomes = sorted(result.outcomes, key=lambda o: (STATUS_ORDER[o.status],
                                                      o.first_step or 0, o.id))
    counts = {s: len(result.by_status(s)) for s in STATUS_ORDER}
    lines = [f"traincheck: {len(outcomes)} invariants checked over {result.processes} "
             f"process(es), {result.events} events: " + ", ".join(
                 f"{n} {s}" for s, n in counts.items() if n)]
    shown = [o for o in outcomes if o.status in ("violated", "error") or show_held]
    if shown:
        lines += [""] + _table(shown, width)
    for o in result.violated:
        d = diagnose(o, invariants.get(o.id), result.frameworks)
        lines += ["", f"{o.id}: {_cut(d.statement, 400)}"]
        lines += [f"  at {loc}" for loc in d.locations[:3]]
        lines += [f"  likely cause: {c}" for c in d.causes[:5]]
        lines += [f"  note: {c}" for c in d.caveats]
    never = [o for o in outcomes if o.status in ("not-triggered", "not-checked")]
    if never:
        lines += ["", f"{len(never)} invariant(s) never triggered:"]
        for o in never[:50]:
            lines.append(f"  {o.id}: {o.why_not or 'never triggered'}")
        if len(never) > 50:
            lines.append(f"  ... and {len(never) - 50} more (use --json for all)")
    lines.append("")
    lines.append("result: " + ("VIOLATIONS FOUND" if result.violated else
                               "no violations" + ("" if counts["held"] else
                                                  " (but no invariant was triggered)")))
    return "\n".join(lines)
