"""StepEvolution: a variable attribute evolves regularly with the training step.

Two shapes: ``changes`` — the attribute's value differs at the end of every step from its
value at the end of the previous step (trained parameters change every step); ``plus_one`` —
an integer attribute grows by exactly one per step (an optimizer's step counter). One example
per (process, variable, attribute, pair of consecutive completed steps); the precondition
reads the variable's state at the earlier step (except the attribute under study) and the meta
variables. Only the last step-end states of
each process are kept. A step-end produced by the trace ending (no step completed) is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..analysis.assembler import Item, StepEnd
from ..invariants import Invariant
from ..preconditions import Row, make_row, merge_rows, meta_fields
from .base import PlanPart, content_rules
from .common import (
    Collector,
    Interner,
    Obs,
    TemplateRelation,
    VarRows,
    count_folded,
    meta_int,
    name_list,
    unfold,
)

__all__ = ["StepEvolution"]

_FAMILY = "evolve"  # one hypothesis family per attribute: ("evolve", attr)


def _labels(attr: str, b: Any, a: Any) -> frozenset:
    out = set()
    if a != b:
        out.add(("changes", attr))
    if (isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool)
            and not isinstance(b, bool) and a - b == 1):
        out.add(("plus_one", attr))
    return frozenset(out)


class _EvoCollector(Collector):
    def __init__(self, wanted: set[tuple] | None, detail: bool) -> None:
        self.wanted = wanted
        self.active = wanted is None or any(f[0] == _FAMILY for f in wanted)
        # checking: only the attributes some invariant is about (None: every attribute)
        self.attrs = None if wanted is None else {f[1] for f in wanted if f[0] == _FAMILY}
        self.prev: dict[int, StepEnd] = {}
        self.rows = VarRows()
        # the same (state row, meta row, attribute) recurs every step: its example rows are
        # built once and shared, so the accumulator's identity cache hits
        self.intern = Interner()
        self._rows: dict[tuple[int, int, str], tuple[Row, Row, tuple[Row]]] = {}
        # inference only: every step repeats the examples of the last; fold them into
        # (family, rows, labels, variable) -> [rows, count, first steps] (see finish())
        self.fold = wanted is None and not detail
        self._fold: dict[tuple, list] = {}

    def feed(self, item: Item) -> Iterable[Obs]:
        if not self.active or not isinstance(item, StepEnd):
            return ()
        if item.meta.get("step") == item.step:
            return ()  # the trace ended inside this step: it did not complete
        prev = self.prev.get(item.source)
        self.prev[item.source] = item
        if prev is None or prev.step + 1 != item.step:
            return ()
        meta = self.intern(make_row(meta_fields(prev.meta)))
        rank = meta_int(item.meta, "rank")
        out = []
        for name in sorted(prev.states.keys() & item.states.keys()):
            b, a = prev.states[name], item.states[name]
            common = b.keys() & a.keys()
            if self.attrs is not None:
                common &= self.attrs
                if not common:
                    continue
            vrow = self.rows.var_row(b, name=name)
            for attr in sorted(common):
                fam = (_FAMILY, attr)
                if self.wanted is not None and fam not in self.wanted:
                    continue
                rows = self._example(vrow, meta, attr)
                labels = self.intern(_labels(attr, b[attr], a[attr]))
                if self.fold:
                    out += self._note(fam, rows, labels, name, item.step)
                    continue
                out.append(Obs(family=fam, rows=rows, labels=labels,
                               subject=name, group=(item.source, item.step),
                               source=item.source, step=item.step, rank=rank,
                               observed={"before": b, "after": a}))
        return out

    def _note(self, fam: tuple, rows: tuple[Row], labels: frozenset, name: str,
              step: int) -> list[Obs]:
        """Inference: count a repeated example instead of emitting it (see finish())."""
        key = (fam, id(rows), labels, name)
        got = self._fold.get(key)
        out: list[Obs] = []
        if got is None or got[0] is not rows:
            if got is not None or len(self._fold) >= 1 << 14:
                out = self._flush()  # an id was reused, or bound the memory
            got = self._fold[key] = [rows, 0, ()]
        count_folded(got, step)
        return out

    def _flush(self) -> list[Obs]:
        out = []
        for (fam, _, labels, name), (rows, n, steps) in self._fold.items():
            out += unfold(fam, rows, labels, n, steps, subject=name)
        self._fold.clear()
        return out

    def finish(self) -> Iterable[Obs]:
        return self._flush()

    def _example(self, vrow: Row, meta: Row, attr: str) -> tuple[Row]:
        key = (id(vrow), id(meta), attr)
        hit = self._rows.get(key)
        if hit is not None and hit[0] is vrow and hit[1] is meta:
            return hit[2]
        # the attribute under study never conditions itself: "value grows by one
        # when value = 1 or 2" would only restate the reference run's values
        own = f"var.{attr}"
        rows = (tuple(kv for kv in merge_rows(vrow, meta) if kv[0] != own),)
        if len(self._rows) >= 1 << 16:
            self._rows.clear()
        self._rows[key] = (vrow, meta, rows)  # holds both rows: their ids stay unique
        return rows


class StepEvolution(TemplateRelation):
    name = "StepEvolution"
    description = ("a variable attribute evolves regularly with the step: it changes every "
                   "step, or an integer grows by exactly one per step")

    def collector(self, wanted: set[tuple] | None = None, detail: bool = False) -> Collector:
        return _EvoCollector(wanted, detail)

    def params(self, family: tuple, label: Any) -> dict[str, Any]:
        return {"shape": label[0], "attr": label[1]}

    def key(self, params: dict[str, Any]) -> tuple[tuple, Any]:
        return (_FAMILY, params["attr"]), (params["shape"], params["attr"])

    def plan(self, inv: Invariant) -> PlanPart:
        # reads only step-end states: content is needed when a step ends; "changes" compares
        # each variable's value with its own at the previous step end
        attr = inv.params["attr"]
        return PlanPart(attributes={attr}, variables={"*"},
                        content=content_rules(attr, inv.precondition, step_end=True,
                                              changes=inv.params["shape"] == "changes"))

    def text(self, params: dict[str, Any], subjects: Sequence[str], cond: str) -> str:
        names = f" ({name_list(subjects)})" if subjects else ""
        c = f" {cond}" if cond else ""
        if params["shape"] == "plus_one":
            return f"`{params['attr']}` grows by exactly 1 every step{c}{names}"
        return f"`{params['attr']}` of every variable changes every step{c}{names}"

    def hint(self, params: dict[str, Any]) -> str:
        if params["shape"] == "plus_one":
            return ("the counter skipped or repeated a step: a step skipped (e.g. by a grad "
                    "scaler), run twice, or state restored from a checkpoint")
        return ("the variable stopped being updated: frozen by mistake, not in the "
                "optimizer, zero gradients, or a learning rate of 0")

    def message(self, inv: Invariant, negs: list[Obs], total: int) -> tuple[str, Any, Any]:
        p = inv.params
        o = negs[0]
        names = [x.subject for x in negs if x.subject]
        rank = f" on rank {o.rank}" if o.rank is not None else ""
        attr = p["attr"]
        if p["shape"] == "plus_one":
            b = (o.observed or {}).get("before", {}).get(attr)
            a = (o.observed or {}).get("after", {}).get(attr)
            return (f"step {o.step}{rank}: `{attr}` of {name_list(names)} went from {b} to {a}, "
                    f"expected {b + 1 if isinstance(b, int) else 'one more'}",
                    "+1 per step", {"before": b, "after": a})
        return (f"step {o.step}{rank}: `{attr}` of {len(negs)} of {total} variables did not "
                f"change during the step: {name_list(names)}", f"{attr} changes every step",
                {"unchanged": names[:20]})
