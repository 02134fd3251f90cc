"""VarConstant: a named variable keeps a flag or kind attribute for the whole run.

Per (stable variable name, attribute), over every state of the variable the reference runs
recorded: a ``bool`` or ``str`` attribute (a trainability flag, a dtype, a device) that always
had one value, or a fingerprint attribute that was never set (a gradient that never appeared:
the variable is frozen). Numbers, shapes and set fingerprints are left out: they are training
values, not configuration. One invariant per (attribute, value) lists the variables it covers,
so "these layers are frozen and those are trained" is learned from the reference run and a run
that freezes or trains the wrong ones breaks it at the first state it records.

The rule is per name, so it says nothing about variables a reference run did not have; a value
must be seen at two or more distinct steps (setup-only variables are not judged).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..analysis.assembler import Item, ProcInfo, VarChange
from ..invariants import Invariant, Precondition, Violation, invariant_id
from ..preconditions import FINGERPRINT_ATTRS
from .base import PlanPart, RelationChecker, TriggerStats
from .common import (
    Accumulator,
    Collector,
    Obs,
    TemplateRelation,
    count_folded,
    frameworks_seen,
    meta_int,
    name_list,
    state_key,
    unfold,
)

__all__ = ["VarConstant"]

_FAMILY = "varconst"  # one family per (attribute, variable): ("varconst", attr, name)
UNSET = "<never set>"  # the value recorded for a fingerprint attribute that is None
SET = "<set>"


def observed_values(attrs: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(attribute, value) pairs this template reasons about, for one variable state."""
    for attr, v in sorted(attrs.items()):
        if attr in FINGERPRINT_ATTRS:
            yield attr, (UNSET if v is None else SET)
        elif isinstance(v, (bool, str)):
            yield attr, v


class _Collector(Collector):
    """One example per (state, attribute). A variable's flags rarely change, so states with
    the same flags are folded: (name, flags) -> [examples, states seen, first steps], and
    become weighted examples when the folder fills up or the stream ends."""

    def __init__(self) -> None:
        self._fold: dict[tuple, list] = {}

    def feed(self, item: Item) -> Iterable[Obs]:
        if not isinstance(item, VarChange):
            return ()
        step = meta_int(item.meta, "step")
        try:
            key = (item.name, state_key(item.after))
        except TypeError:  # an unhashable attribute value: not folded
            return [Obs(family=(_FAMILY, attr), rows=(), labels=frozenset({(item.name, v)}),
                        subject=item.name, step=step)
                    for attr, v in observed_values(item.after)]
        got = self._fold.get(key)
        out: list[Obs] = []
        if got is None:
            if len(self._fold) >= 1 << 14:
                out = self._flush()
            parts = [((_FAMILY, attr), frozenset({(item.name, v)}))
                     for attr, v in observed_values(item.after)]
            got = self._fold[key] = [parts, 0, ()]
        count_folded(got, step)
        return out

    def _flush(self) -> list[Obs]:
        out = []
        for (name, _), (parts, n, steps) in self._fold.items():
            for fam, labels in parts:
                out += unfold(fam, (), labels, n, steps, subject=name)
        self._fold.clear()
        return out

    def finish(self) -> Iterable[Obs]:
        return self._flush()


class VarConstant(TemplateRelation):
    name = "VarConstant"
    description = ("a named variable's flag or kind attribute (trainable or not, dtype, "
                   "device, a gradient never set) is the same in every state of the run")

    def collector(self, wanted: set[tuple] | None = None, detail: bool = False) -> Collector:
        return _Collector()

    def decide(self, acc: Accumulator, frameworks: dict[str, dict[str, str]]
               ) -> list[Invariant]:
        out = []
        for fam in sorted(acc.hyps, key=repr):
            if fam[0] != _FAMILY:
                continue
            for value, names in sorted(_constant(acc, fam).items(), key=repr):
                out.append(self._invariant(acc, fam[1], value, names, frameworks))
        return out

    def _invariant(self, acc: Accumulator, attr: str, value: Any, names: list[str],
                   frameworks: dict[str, dict[str, str]]) -> Invariant:
        hyps = acc.hyps.get((_FAMILY, attr), {})
        runs = sorted(set().union(*(hyps[(n, value)].runs for n in names if (n, value) in hyps)))
        params = {"attr": attr, "value": value, "variables": names}
        pre = Precondition()
        return Invariant(
            id=invariant_id(self.name, params, pre), relation=self.name, params=params,
            precondition=pre, text=self.text(params, names, ""), hint=self.hint(params),
            support={"positive": len(names), "negative": 0, "runs": len(runs)}, runs=runs,
            frameworks=frameworks_seen(runs, frameworks))

    def text(self, params: dict[str, Any], subjects: Sequence[str], cond: str) -> str:
        names = name_list(params["variables"])
        if params["value"] == UNSET:
            return f"`{params['attr']}` of {names} is never set"
        return f"`{params['attr']}` of {names} is always {params['value']!r}"

    def hint(self, params: dict[str, Any]) -> str:
        return ("a variable's configuration changed: layers frozen or unfrozen by mistake (an "
                "inverted condition, a wrong name prefix), a dtype or device conversion that "
                "did not reach every variable, or state replaced by a load")

    def plan(self, inv: Invariant) -> PlanPart:
        # fingerprint attributes count only as set or never set here: no content needed
        return PlanPart(variables=set(inv.params["variables"]), attributes={inv.params["attr"]},
                        content=[])

    def checker(self, invariants: Sequence[Invariant]) -> RelationChecker:
        return _Checker(invariants)


def _constant(acc: Accumulator, fam: tuple) -> dict[Any, list[str]]:
    """value -> the variables that had only that value, at two or more distinct steps."""
    values: dict[str, list[Any]] = {}
    for name, v in acc.hyps.get(fam, {}):
        values.setdefault(name, []).append(v)
    out: dict[Any, list[str]] = {}
    for name in sorted(values):
        (v, *rest) = values[name]
        if rest or v == SET or not acc.recurs(fam, (name, v), Precondition()):
            continue  # changed, merely present, or seen at setup only
        out.setdefault(v, []).append(name)
    return out


class _Checker(RelationChecker):
    def __init__(self, invariants: Sequence[Invariant]) -> None:
        self.by_var: dict[str, list[Invariant]] = {}
        for inv in invariants:
            for var in inv.params.get("variables", ()):
                self.by_var.setdefault(var, []).append(inv)
        self._stats = {inv.id: TriggerStats() for inv in invariants}
        self._ranks: dict[int, int | None] = {}

    def stats(self) -> dict[str, TriggerStats]:
        return self._stats

    def feed(self, item: Item) -> list[Violation]:
        if isinstance(item, ProcInfo):
            self._ranks[item.source] = meta_int(item.meta, "rank")
        if not isinstance(item, VarChange) or item.name not in self.by_var:
            return []
        values = dict(observed_values(item.after))
        out = []
        for inv in self.by_var[item.name]:
            attr, want = inv.params["attr"], inv.params["value"]
            if attr not in values:
                continue
            st = self._stats[inv.id]
            st.checked += 1
            if values[attr] == want:
                continue
            st.violated += 1
            out.append(self._violation(item, inv, values[attr]))
        return out

    def _violation(self, ch: VarChange, inv: Invariant, got: Any) -> Violation:
        step = meta_int(ch.meta, "step")
        rank = meta_int(ch.meta, "rank")
        if rank is None:
            rank = self._ranks.get(ch.source)
        attr, want = inv.params["attr"], inv.params["value"]
        where = f"step {step}" + (f" on rank {rank}" if rank is not None else "")
        did = "was set" if want == UNSET else f"is {got!r}"
        expected = "never set" if want == UNSET else repr(want)
        return Violation(invariant=inv.id, relation=inv.relation, step=step, rank=rank, t=ch.t,
                         message=f"{where}: `{attr}` of {ch.name} {did}, expected {expected} "
                                 f"as in the reference runs",
                         expected=want, observed=got, hint=inv.hint,
                         evidence=[{"subject": ch.name, "observed": got, "step": step}])
