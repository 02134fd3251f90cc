"""APIArgValue: the value of an API's flag-like argument is fixed by the call's context.

For every call of A (nested calls included) and every flag-like argument X (a bool, a short
string or a small int, given directly or as a scalar attribute of ``self``), the hypothesis
"X = v" is positive on calls where X had value v. The precondition may only read the call's
*context* — meta variables (stage, ...) and the instrumented calls it runs inside — never the
call's own arguments, which would explain X by itself (``deterministic`` by ``active``).

So "dropout is off whenever stage = eval" or "the model is applied with train = True inside
the training step" come out as invariants; an argument that never varied in the reference
runs gives none (it says nothing about the context, and would only turn a harmless change of
configuration into an alarm).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..analysis.assembler import CallRecord, Item
from ..events import ObjSummary, Scalar
from ..invariants import Invariant
from ..preconditions import is_identity, make_row, meta_fields
from .base import PlanPart
from .common import (
    Accumulator,
    Collector,
    Obs,
    TemplateRelation,
    call_label,
    meta_int,
    short_api,
    walk_calls,
)

__all__ = ["APIArgValue"]

_MAX_VALUES = 4  # an argument seen with more values is not a flag
_MAX_STR = 32


def _flag(v: Any) -> bool:
    if isinstance(v, bool):
        return True
    if isinstance(v, int):
        return -1000 <= v <= 1000
    return isinstance(v, str) and 0 < len(v) <= _MAX_STR


def flag_values(call: CallRecord) -> dict[str, Any]:
    """Flag-like scalar arguments of ``call`` (``self.<attr>`` for the receiver's)."""
    out: dict[str, Any] = {}
    for name, s in call.args.items():
        if isinstance(s, Scalar):
            if _flag(s.v) and not is_identity(name):
                out[name] = s.v
        elif name == "self" and isinstance(s, ObjSummary):
            for k, a in s.attrs.items():
                if isinstance(a, Scalar) and _flag(a.v) and not is_identity(k):
                    out[f"self.{k}"] = a.v
    return out


def context_row(call: CallRecord, ancestors: Iterable[str]) -> tuple:
    fields = meta_fields(call.meta)
    for a in ancestors:
        fields[f"within:{a}"] = True
    return make_row(fields)


class _ValueCollector(Collector):
    def __init__(self, wanted: set[tuple] | None) -> None:
        self.wanted = wanted

    def feed(self, item: Item) -> Iterable[Obs]:
        if not isinstance(item, CallRecord):
            return ()
        out = []
        for call, anc in walk_calls(item):
            vals = flag_values(call)
            if not vals:
                continue
            row = None
            step = meta_int(call.meta, "step")
            for arg, v in vals.items():
                fam = ("argval", call.api, arg)
                if self.wanted is not None and fam not in self.wanted:
                    continue
                if row is None:
                    row = context_row(call, anc)
                out.append(Obs(family=fam, rows=(row,), labels=frozenset({v}),
                               group=(item.source, step), source=item.source, step=step,
                               rank=meta_int(call.meta, "rank"), call=call, observed=v))
        return out


class APIArgValue(TemplateRelation):
    name = "APIArgValue"
    description = ("a flag-like argument of an API (a bool, short string or small int) takes "
                   "the value its context implies (stage, enclosing calls)")

    def collector(self, wanted: set[tuple] | None = None, detail: bool = False) -> Collector:
        return _ValueCollector(wanted)

    def params(self, family: tuple, label: Any) -> dict[str, Any]:
        return {"api": family[1], "arg": family[2], "value": label}

    def key(self, params: dict[str, Any]) -> tuple[tuple, Any]:
        return ("argval", params["api"], params["arg"]), params["value"]

    def decide_one(self, acc: Accumulator, fam: tuple, lab: Any,
                   frameworks: dict[str, dict[str, str]]) -> Invariant | None:
        if len(acc.hyps.get(fam, {})) > _MAX_VALUES:
            return None
        _, neg = acc.split(fam, lab)
        if not neg:  # the argument never varied: nothing ties it to the context
            return None
        return super().decide_one(acc, fam, lab, frameworks)

    def plan(self, inv: Invariant) -> PlanPart:
        return PlanPart(apis={inv.params["api"]})

    def text(self, params: dict[str, Any], subjects: Sequence[str], cond: str) -> str:
        c = f" {cond}" if cond else ""
        return (f"{short_api(params['api'])}() gets `{params['arg']}` = "
                f"{params['value']!r}{c}")

    def hint(self, params: dict[str, Any]) -> str:
        return ("a mode flag does not match the phase it runs in: a train/eval or "
                "deterministic switch left in the wrong state, or a setting meant for one "
                "phase used in another")

    def message(self, inv: Invariant, negs: list[Obs], total: int) -> tuple[str, Any, Any]:
        p = inv.params
        o = negs[0]
        who = f"`{call_label(o.call)}`" if o.call is not None else f"`{short_api(p['api'])}()`"
        where = f" at step {o.step}" if o.step is not None else ""
        return (f"{who}{where} got `{p['arg']}` = {o.observed!r}, expected {p['value']!r}",
                p["value"], o.observed)
