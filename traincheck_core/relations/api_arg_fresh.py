"""APIArgFresh: an API gets a fresh value of an argument every step.

For every call of A (nested calls included) after a process's first step, and every argument
X that carries a content fingerprint (a random key, a batch of data), the hypothesis "X is
fresh" is positive when X's fingerprint was not among the values A got in the process's
previous step. So "the train step gets a new dropout key every step" or "the model sees a new
batch every step" come out as invariants; a key reused across steps (identical dropout masks)
or a batch fed again is a violation at the first step that repeats it.

Only the previous step is remembered (memory stays bounded; a value legitimately recurring
after several steps, such as a small dataset's batches in the next epoch, is no alarm). The
precondition reads the call's context (meta variables, enclosing calls), not its arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..analysis.assembler import CallRecord, Item
from ..events import TensorSummary
from ..invariants import Invariant
from .api_arg_value import context_row
from .base import PlanPart
from .common import Collector, Obs, TemplateRelation, call_label, meta_int, short_api, walk_calls

__all__ = ["APIArgFresh"]


def fingerprinted_args(call: CallRecord) -> dict[str, str]:
    return {name: s.fp for name, s in call.args.items()
            if name != "self" and isinstance(s, TensorSummary) and s.fp is not None}


class _FreshCollector(Collector):
    def __init__(self, wanted: set[tuple] | None) -> None:
        self.wanted = wanted
        # (source, api, arg) -> (step, values seen in that step, values of the step before)
        self.seen: dict[tuple[int, str, str], tuple[int, set[str], set[str] | None]] = {}

    def _previous(self, key: tuple[int, str, str], step: int, fp: str) -> set[str] | None:
        """The values of the step before ``step`` (None: no such step was seen)."""
        cur = self.seen.get(key)
        if cur is None:
            self.seen[key] = (step, {fp}, None)
            return None
        s, vals, before = cur
        if step == s:
            vals.add(fp)
            return before
        prev = vals if step == s + 1 else None
        self.seen[key] = (step, {fp}, prev)
        return prev

    def feed(self, item: Item) -> Iterable[Obs]:
        if not isinstance(item, CallRecord):
            return ()
        out = []
        for call, anc in walk_calls(item):
            step = meta_int(call.meta, "step")
            if step is None:
                continue
            row = None
            for arg, fp in fingerprinted_args(call).items():
                fam = ("fresh", call.api, arg)
                if self.wanted is not None and fam not in self.wanted:
                    continue
                prev = self._previous((item.source, call.api, arg), step, fp)
                if prev is None:
                    continue
                if row is None:
                    row = context_row(call, anc)
                fresh = fp not in prev
                out.append(Obs(family=fam, rows=(row,),
                               labels=frozenset({"fresh"}) if fresh else frozenset(),
                               group=(item.source, step), source=item.source, step=step,
                               rank=meta_int(call.meta, "rank"), call=call, observed=fp))
        return out


class APIArgFresh(TemplateRelation):
    name = "APIArgFresh"
    description = ("an API gets a fresh value of an argument (a random key, a batch) every "
                   "step: its fingerprint differs from every value of the previous step")

    def collector(self, wanted: set[tuple] | None = None, detail: bool = False) -> Collector:
        return _FreshCollector(wanted)

    def params(self, family: tuple, label: Any) -> dict[str, Any]:
        return {"api": family[1], "arg": family[2]}

    def key(self, params: dict[str, Any]) -> tuple[tuple, Any]:
        return ("fresh", params["api"], params["arg"]), "fresh"

    def plan(self, inv: Invariant) -> PlanPart:
        api = inv.params["api"]
        return PlanPart(apis={api}, arg_content={api})  # it compares argument fingerprints

    def text(self, params: dict[str, Any], subjects: Sequence[str], cond: str) -> str:
        c = f" {cond}" if cond else ""
        return (f"{short_api(params['api'])}() gets a new `{params['arg']}` every step "
                f"(not one it got in the previous step){c}")

    def hint(self, params: dict[str, Any]) -> str:
        return ("a value meant to be new every step was reused: a random key not split "
                "again inside the loop (identical dropout masks / noise), or the same batch "
                "fed again")

    def message(self, inv: Invariant, negs: list[Obs], total: int) -> tuple[str, Any, Any]:
        p = inv.params
        o = negs[0]
        who = f"`{call_label(o.call)}`" if o.call is not None else f"`{short_api(p['api'])}()`"
        where = f" at step {o.step}" if o.step is not None else ""
        return (f"{who}{where} got the same `{p['arg']}` as in the previous step "
                f"(fingerprint {o.observed})", f"a new {p['arg']}", o.observed)
