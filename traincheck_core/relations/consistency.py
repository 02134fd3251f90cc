"""Consistency: an attribute of a variable agrees across its instances in the processes of one
run — e.g. a data-parallel replica's parameter values are equal on every rank at every step.

Instances are paired by **(step, stable variable name)**, never by wall-clock overlap: each
process's :class:`~traincheck_core.analysis.StepEnd` carries the state of its variables when
the step ended, and the states of one step from every process form one example per variable
(one row per process: the variable's attributes and the process's meta variables). The
example is positive for every attribute whose value is the same in all instances.

A hypothesis starts only from attributes that evolve (the agreed value differs from the one
agreed at the previous step): constant attributes such as dtype agree trivially.
A step is judged (then evicted) as soon as every expected process has ended it: ``world_size``
processes when the processes report one, otherwise every process seen so far once all have
moved past it. Readiness depends only on which steps each process reported, not on clocks, so
a rank whose trace is shifted in time (another host's clock, a late start) still pairs. Memory:
references to the pending steps' states; at most ``_MAX_PENDING`` steps wait, the oldest is
judged with the ranks it has when more do (a crashed rank must not make memory grow with the
run; a skew of more steps than that loses pairs, it never invents them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..analysis.assembler import Item, StepEnd
from ..invariants import Invariant
from ..preconditions import make_row, meta_fields, var_fields
from .base import PlanPart, content_rules
from .common import Collector, Obs, TemplateRelation, name_list

__all__ = ["Consistency"]

_FAMILY = ("consistent",)
_MAX_PENDING = 256  # steps waiting for their slowest rank


class _ConsCollector(Collector):
    def __init__(self, wanted: set[tuple] | None, detail: bool) -> None:
        self.active = wanted is None or _FAMILY in wanted
        self.buf: dict[int, dict[int, StepEnd]] = {}
        self.latest: dict[int, int] = {}  # source -> last step it ended
        self.prev: dict[tuple[str, str], Any] = {}
        self.world = 0  # processes expected per step (world_size), 0 when unknown

    def feed(self, item: Item) -> Iterable[Obs]:
        if not self.active or not isinstance(item, StepEnd):
            return ()
        self.buf.setdefault(item.step, {})[item.source] = item
        self.latest[item.source] = max(item.step, self.latest.get(item.source, item.step))
        ws = item.meta.get("world_size")
        if isinstance(ws, int) and not isinstance(ws, bool) and ws > self.world:
            self.world = ws
        out: list[Obs] = []
        for s in sorted(self.buf):
            if self._complete(s) or len(self.buf) > _MAX_PENDING:
                out += self._judge(s, self.buf.pop(s))
        return out

    def _complete(self, step: int) -> bool:
        if self.world >= 2:
            return len(self.buf[step]) >= self.world
        # no world size known: every process seen so far has moved past the step
        return step < min(self.latest.values())

    def finish(self) -> Iterable[Obs]:
        out: list[Obs] = []
        for s in sorted(self.buf):
            out += self._judge(s, self.buf[s])
        self.buf.clear()
        return out

    def _judge(self, step: int, ends: dict[int, StepEnd]) -> list[Obs]:
        if len(ends) < 2:
            return []
        srcs = sorted(ends)
        names = sorted(set().union(*(ends[s].states for s in srcs)))
        out: list[Obs] = []
        for name in names:
            inst = [(s, ends[s].states[name]) for s in srcs if name in ends[s].states]
            if len(inst) < 2:
                continue
            rows = tuple(sorted(make_row({**var_fields(a, name=name),
                                          **meta_fields(ends[s].meta)})
                                for s, a in inst))
            attrs = sorted(set().union(*(a.keys() for _, a in inst)))
            labels, seeds = set(), set()
            for k in attrs:
                vals = [a.get(k) for _, a in inst]
                if all(v == vals[0] for v in vals):
                    labels.add(k)
                    if vals[0] is not None and self.prev.get((name, k), vals[0]) != vals[0]:
                        seeds.add(k)
                    self.prev[(name, k)] = vals[0]
            out.append(Obs(family=_FAMILY, rows=rows, labels=frozenset(labels),
                           seeds=frozenset(seeds), subject=name, group=step, source=inst[0][0],
                           step=step,
                           observed={str(ends[s].meta.get("rank", s)): a for s, a in inst}))
        return out


class Consistency(TemplateRelation):
    name = "Consistency"
    description = ("a variable attribute agrees across the processes (ranks) of a run at the "
                   "same step, paired by step and stable variable name")
    cross_process = True

    def collector(self, wanted: set[tuple] | None = None, detail: bool = False) -> Collector:
        return _ConsCollector(wanted, detail)

    def params(self, family: tuple, label: Any) -> dict[str, Any]:
        return {"attr": label, "across": "ranks", "pair_by": "step,name"}

    def key(self, params: dict[str, Any]) -> tuple[tuple, Any]:
        return _FAMILY, params["attr"]

    def plan(self, inv: Invariant) -> PlanPart:
        # compares the states of one step's end across processes
        attr = inv.params["attr"]
        return PlanPart(attributes={attr}, variables={"*"},
                        content=content_rules(attr, inv.precondition, step_end=True))

    def text(self, params: dict[str, Any], subjects: Sequence[str], cond: str) -> str:
        names = f" ({name_list(subjects)})" if subjects else ""
        c = f" {cond}" if cond else ""
        return (f"replicated variables have equal `{params['attr']}` across ranks at every "
                f"step{c}{names}")

    def hint(self, params: dict[str, Any]) -> str:
        return ("replicas diverged: gradients not all-reduced (a parameter outside DDP, "
                "no_sync left on, a rank skipping a step), different initialization or "
                "random seeds, or a rank-dependent code path")

    def message(self, inv: Invariant, negs: list[Obs], total: int) -> tuple[str, Any, Any]:
        attr = inv.params["attr"]
        o = negs[0]
        names = [x.subject for x in negs if x.subject]
        ranks = sorted(o.observed or {})
        vals = {r: (o.observed[r] or {}).get(attr) for r in ranks}
        return (f"at step {o.step}, `{attr}` differs across ranks {', '.join(ranks)} for "
                f"{len(negs)} of {total} replicated variables: {name_list(names)}",
                f"equal {attr} on every rank", {"variable": o.subject, "values": vals})
