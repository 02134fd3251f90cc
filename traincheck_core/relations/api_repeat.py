"""APIRepeat: API B runs several times between two consecutive calls of API A.

The ratio of two loops: a learning-rate scheduler stepped once per epoch sees many optimizer
steps between two of its calls; a data loader re-created once per epoch sees many forwards. One
example per (call of A that has a previous call of A in the same process, API B seen in that
process): positive when B ran two or more times in between. Only top-level calls count, as in
:mod:`.api_sequence`. A run that calls A as often as B (a per-epoch call moved into the batch
loop) breaks the invariant at the second call of A.

State per process: for every API seen, how many calls of each other API followed its last
call — O(distinct APIs) per call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..analysis.assembler import CallRecord, Item
from ..invariants import Invariant, Precondition
from .base import PlanPart
from .common import (
    Accumulator,
    Collector,
    Obs,
    TemplateRelation,
    meta_int,
    short_api,
)

__all__ = ["APIRepeat"]

_FAMILY = "repeat"  # ("repeat", A, B)
SEVERAL = "several"
MIN_GAPS = 2  # intervals of A seen with B repeated, at distinct steps (via Accumulator.recurs)


class _Collector(Collector):
    def __init__(self, wanted: set[tuple] | None) -> None:
        self.wanted = wanted
        self.since: dict[int, dict[str, dict[str, int]]] = {}  # source -> A -> B -> calls
        self.seen: dict[int, set[str]] = {}

    def feed(self, item: Item) -> Iterable[Obs]:
        if not isinstance(item, CallRecord):
            return ()
        src, a = item.source, item.api
        since = self.since.setdefault(src, {})
        seen = self.seen.setdefault(src, set())
        out = []
        if a in since:
            counts = since[a]
            for b in sorted(seen - {a}):
                fam = (_FAMILY, a, b)
                if self.wanted is not None and fam not in self.wanted:
                    continue
                n = counts.get(b, 0)
                out.append(Obs(family=fam, rows=(), labels=frozenset({SEVERAL} if n >= 2 else ()),
                               subject=short_api(b), group=(src, a, b), source=src,
                               step=meta_int(item.meta, "step"),
                               rank=meta_int(item.meta, "rank"), call=item, observed=n))
        since[a] = {}
        for other, counts in since.items():
            if other != a:
                counts[a] = counts.get(a, 0) + 1
        seen.add(a)
        return out


class APIRepeat(TemplateRelation):
    name = "APIRepeat"
    description = "API B runs several times between two consecutive calls of API A"

    def collector(self, wanted: set[tuple] | None = None, detail: bool = False) -> Collector:
        return _Collector(wanted)

    def decide(self, acc: Accumulator, frameworks: dict[str, dict[str, str]]
               ) -> list[Invariant]:
        out = []
        for fam, lab in acc.hypotheses():
            if fam[0] != _FAMILY or lab != SEVERAL:
                continue
            pos, neg = acc.split(fam, lab)
            pre = Precondition()
            if neg or not acc.recurs(fam, lab, pre):
                continue  # B ran once or not at all in some interval, or too few intervals
            h = acc.hyps[fam][lab]
            params = self.params(fam, lab)
            out.append(self.build(params, pre, [], (sum(pos.values()), 0), h.runs,
                                  frameworks))
        return out

    def params(self, family: tuple, label: Any) -> dict[str, Any]:
        return {"api": family[1], "repeated": family[2]}

    def key(self, params: dict[str, Any]) -> tuple[tuple, Any]:
        return (_FAMILY, params["api"], params["repeated"]), SEVERAL

    def plan(self, inv: Invariant) -> PlanPart:
        return PlanPart(apis={inv.params["api"], inv.params["repeated"]})

    def text(self, params: dict[str, Any], subjects: Sequence[str], cond: str) -> str:
        a, b = short_api(params["api"]), short_api(params["repeated"])
        return f"{b}() runs several times between two calls of {a}()"

    def hint(self, params: dict[str, Any]) -> str:
        a, b = short_api(params["api"]), short_api(params["repeated"])
        return (f"{a}() is called as often as {b}(): a once-per-epoch call (scheduler step, "
                f"evaluation, loader set-up) moved into the per-batch loop, or a loop ends early")

    def message(self, inv: Invariant, negs: list[Obs], total: int) -> tuple[str, Any, Any]:
        o = negs[0]
        a, b = short_api(inv.params["api"]), short_api(inv.params["repeated"])
        rank = f", rank {o.rank}" if o.rank is not None else ""
        return (f"{a}() at step {o.step}{rank} came after only {o.observed} call(s) of {b}() "
                f"since the previous {a}(); the reference runs always had several",
                ">= 2 calls in between", o.observed)
