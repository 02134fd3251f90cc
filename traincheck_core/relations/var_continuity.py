"""VarContinuity: a re-created variable starts from the value its namesake had last.

Adapters name a second instance of an object with a numeric suffix (``model`` then
``model_2``, ``opt.state.model.fc.weight`` then ``opt_2.state.model_2.fc.weight``). When a
training script builds fresh objects and restores them (resuming from a checkpoint, moving to a
new optimizer), the first state of each new variable equals the last state of the variable of
the same name without suffixes. Restoring state onto the wrong variables (optimizer state
matched by position to reordered parameter groups, a state dict loaded into the wrong module)
breaks it at the first state the new variable records.

One example per variable seen for the first time whose suffix-free name (its *namesake*) was
seen before under another name: positive when the ``data`` fingerprints are equal. One family
per suffix-free root object (``opt``, ``model``), so an object that is legitimately re-created
fresh does not mask one that is restored. Fingerprint equality is no coincidence, so a restore
is a rule after two matching variables, even though it happens once (no distinct-step rule).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from ..analysis.assembler import Item, VarChange
from ..invariants import Invariant, Precondition
from ..session import ContentRule
from .base import PlanPart
from .common import (
    Accumulator,
    Collector,
    Obs,
    TemplateRelation,
    meta_int,
    name_list,
)

__all__ = ["VarContinuity", "namesake"]

_FAMILY = "continuity"  # ("continuity", root)
CONTINUES = "continues"
ATTR = "data"
MIN_EXAMPLES = 2
_SUFFIX = re.compile(r"_\d+(?=\.|$)")


def namesake(name: str) -> str:
    """``opt_2.state.model_2.fc.weight`` -> ``opt.state.model.fc.weight``."""
    return _SUFFIX.sub("", name)


class _Collector(Collector):
    def __init__(self, wanted: set[tuple] | None) -> None:
        self.wanted = wanted
        self.last: dict[int, dict[str, tuple[str, Any]]] = {}  # source -> namesake -> last

    def feed(self, item: Item) -> Iterable[Obs]:
        if not isinstance(item, VarChange) or ATTR not in item.after:
            return ()
        last = self.last.setdefault(item.source, {})
        key = namesake(item.name)
        prev = last.get(key)
        last[key] = (item.name, item.after[ATTR])
        if item.before is not None or prev is None or prev[0] == item.name:
            return ()
        fam = (_FAMILY, key.split(".", 1)[0])
        if self.wanted is not None and fam not in self.wanted:
            return ()
        same = prev[1] is not None and prev[1] == item.after[ATTR]
        return [Obs(family=fam, rows=(), labels=frozenset({CONTINUES} if same else ()),
                    subject=item.name, group=(item.source, meta_int(item.meta, "step")),
                    source=item.source, step=meta_int(item.meta, "step"),
                    rank=meta_int(item.meta, "rank"), observed=prev[0])]


class VarContinuity(TemplateRelation):
    name = "VarContinuity"
    description = ("a re-created variable (model_2, opt_2, ...) starts from the value its "
                   "namesake had last: state restored onto the right variables")

    def collector(self, wanted: set[tuple] | None = None, detail: bool = False) -> Collector:
        return _Collector(wanted)

    def decide(self, acc: Accumulator, frameworks: dict[str, dict[str, str]]
               ) -> list[Invariant]:
        out = []
        for fam, lab in acc.hypotheses():
            if fam[0] != _FAMILY or lab != CONTINUES:
                continue
            pos, neg = acc.split(fam, lab)
            h = acc.hyps[fam][lab]
            if neg or len(h.subjects) < MIN_EXAMPLES:
                continue
            params = self.params(fam, lab)
            pre = Precondition()
            out.append(self.build(params, pre, sorted(h.subjects), (sum(pos.values()), 0),
                                  h.runs, frameworks))
        return out

    def params(self, family: tuple, label: Any) -> dict[str, Any]:
        return {"root": family[1], "attr": ATTR}

    def key(self, params: dict[str, Any]) -> tuple[tuple, Any]:
        return (_FAMILY, params["root"]), CONTINUES

    def plan(self, inv: Invariant) -> PlanPart:
        return PlanPart(attributes={ATTR}, variables={"*"},
                        content=[ContentRule(attr=ATTR)])

    def text(self, params: dict[str, Any], subjects: Sequence[str], cond: str) -> str:
        names = f" ({name_list(subjects)})" if subjects else ""
        return (f"re-created variables of `{params['root']}` start from the `{ATTR}` their "
                f"namesakes had last{names}")

    def hint(self, params: dict[str, Any]) -> str:
        return ("restored state went to the wrong variables: optimizer state matched by "
                "position to parameter groups listed in another order, a state dict loaded "
                "into another module, or a restore that was skipped")

    def message(self, inv: Invariant, negs: list[Obs], total: int) -> tuple[str, Any, Any]:
        o = negs[0]
        rank = f" on rank {o.rank}" if o.rank is not None else ""
        names = [x.subject for x in negs if x.subject]
        return (f"step {o.step}{rank}: {len(negs)} of {total} re-created variables do not start "
                f"from their namesake's last `{ATTR}`: {name_list(names)} (e.g. {o.subject} "
                f"differs from {o.observed})", "equal to the namesake's last value",
                {"differs": names[:20]})
