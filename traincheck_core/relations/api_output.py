"""APIOutput: properties of an API's tensor output are constant, or equal to an input's.

For every call of A (nested calls included) that returned a tensor summary: ``const`` — the
output's ``dtype``/``device`` is always one value; ``same_as`` — the output's ``dtype``,
``shape`` or ``device`` equals that of tensor argument X. The precondition reads the call's
meta (e.g. ``autocast``), arguments and enclosing calls, so "a Linear's output has its input's
dtype unless autocast is on" comes out as an invariant with a precondition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..analysis.assembler import CallRecord, Item
from ..events import TensorSummary
from ..invariants import Invariant
from .base import PlanPart
from .common import (
    Collector,
    Obs,
    TemplateRelation,
    call_label,
    call_row,
    meta_int,
    short_api,
    walk_calls,
)

__all__ = ["APIOutput"]

_PROPS = ("dtype", "shape", "device")
_CONST = ("dtype", "device")


def _labels(call: CallRecord, ret: TensorSummary) -> tuple[frozenset, dict[str, Any]]:
    out = set()
    got = {p: getattr(ret, p) for p in _PROPS}
    for p in _CONST:
        out.add(("const", p, got[p]))
    for name, arg in call.args.items():
        if isinstance(arg, TensorSummary):
            for p in _PROPS:
                if getattr(arg, p) == got[p]:
                    out.add(("same_as", p, name))
    return frozenset(out), got


class _OutCollector(Collector):
    def __init__(self, wanted: set[tuple] | None, detail: bool) -> None:
        self.wanted = wanted

    def feed(self, item: Item) -> Iterable[Obs]:
        if not isinstance(item, CallRecord):
            return ()
        out = []
        for call, anc in walk_calls(item):
            fam = ("output", call.api)
            if not isinstance(call.ret, TensorSummary):
                continue
            if self.wanted is not None and fam not in self.wanted:
                continue
            labels, got = _labels(call, call.ret)
            out.append(Obs(family=fam, rows=(call_row(call, anc),), labels=labels,
                           group=(item.source, call.id), source=item.source,
                           step=meta_int(call.meta, "step"), rank=meta_int(call.meta, "rank"),
                           call=call, observed=got))
        return out


class APIOutput(TemplateRelation):
    name = "APIOutput"
    description = ("a property (dtype/shape/device) of an API's tensor output is constant or "
                   "equal to the same property of one of its tensor inputs")

    def collector(self, wanted: set[tuple] | None = None, detail: bool = False) -> Collector:
        return _OutCollector(wanted, detail)

    def params(self, family: tuple, label: Any) -> dict[str, Any]:
        kind, prop, what = label
        p = {"api": family[1], "kind": kind, "prop": prop}
        p["value" if kind == "const" else "arg"] = what
        return p

    def key(self, params: dict[str, Any]) -> tuple[tuple, Any]:
        what = params["value"] if params["kind"] == "const" else params["arg"]
        return ("output", params["api"]), (params["kind"], params["prop"], what)

    def plan(self, inv: Invariant) -> PlanPart:
        return PlanPart(apis={inv.params["api"]})

    def text(self, params: dict[str, Any], subjects: Sequence[str], cond: str) -> str:
        api, prop = short_api(params["api"]), params["prop"]
        c = f" {cond}" if cond else ""
        if params["kind"] == "const":
            return f"{api} always returns {prop} {params['value']}{c}"
        return f"{api} returns the {prop} of its `{params['arg']}` argument{c}"

    def hint(self, params: dict[str, Any]) -> str:
        return (f"the output {params['prop']} of {short_api(params['api'])} changed: a "
                "different autocast/precision setting, a tensor on another device, or an "
                "unexpected reshape/broadcast")

    def message(self, inv: Invariant, negs: list[Obs], total: int) -> tuple[str, Any, Any]:
        p = inv.params
        o = negs[0]
        who = f"`{call_label(o.call)}`" if o.call is not None else f"`{short_api(p['api'])}()`"
        where = f" at step {o.step}" if o.step is not None else ""
        if o.rank is not None:
            where += f", rank {o.rank}"
        got = (o.observed or {}).get(p["prop"])
        if p["kind"] == "const":
            exp = p["value"]
        else:
            arg = o.call.args.get(p["arg"]) if o.call is not None else None
            exp = getattr(arg, p["prop"], "?")
        return (f"{who}{where} returned {p['prop']} {got}, expected {exp}", exp, got)
