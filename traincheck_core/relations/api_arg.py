"""APIArg: an API's arguments are distinct, or consistent, across related calls.

Scopes (top-level calls only):

* ``step`` — the calls of A by one process within one step: argument X is pairwise
  ``distinct`` (e.g. each micro-batch gets different data);
* ``ranks`` — the k-th call of A in a step on every process of the run, paired by
  (step, k): argument X is ``distinct`` across ranks (seeds, sampler offsets, data shards) or
  ``equal`` across ranks (hyper-parameters). ``equal`` hypotheses start only from values
  that change over the run: agreeing on a constant is trivial.

Argument values are scalars and tensor fingerprints (``X.fp``); the precondition reads the
calls' rows (one per call of the group).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..analysis.assembler import CallRecord, Item, StepEnd
from ..events import Scalar, TensorSummary
from ..invariants import Invariant
from ..preconditions import Row, call_fields, make_row
from .base import PlanPart
from .common import Collector, Obs, TemplateRelation, call_label, meta_int, short_api

__all__ = ["APIArg"]

_KEEP_STEPS = 3


def _values(call: CallRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, s in call.args.items():
        if name == "self":
            continue
        if isinstance(s, Scalar) and s.v is not None:
            out[name] = s.v
        elif isinstance(s, TensorSummary) and s.fp is not None:
            out[f"{name}.fp"] = s.fp
    return out


_Entry = tuple[Row, dict[str, Any], CallRecord]


def _judge(entries: list[_Entry], kinds: tuple[str, ...]) -> frozenset:
    fields = set().union(*(e[1].keys() for e in entries))
    out = set()
    for f in fields:
        vals = [e[1].get(f) for e in entries]
        if any(v is None for v in vals):
            continue
        if "distinct" in kinds and len(set(map(repr, vals))) == len(vals):
            out.add(("distinct", f))
        if "equal" in kinds and all(v == vals[0] for v in vals):
            out.add(("equal", f))
    return frozenset(out)


class _ArgCollector(Collector):
    def __init__(self, wanted: set[tuple] | None, detail: bool) -> None:
        self.wanted = wanted
        self.step_groups: dict[tuple[int, str], tuple[Any, list[_Entry]]] = {}
        self.rank_groups: dict[tuple[Any, str, int], dict[int, _Entry]] = {}
        self.counts: dict[tuple[int, Any, str], int] = {}
        self.latest: dict[int, int] = {}
        self.prev_equal: dict[tuple[str, str], Any] = {}

    def _wants(self, fam: tuple) -> bool:
        return self.wanted is None or fam in self.wanted

    def feed(self, item: Item) -> Iterable[Obs]:
        out: list[Obs] = []
        if isinstance(item, StepEnd):
            out += self._close_step(item.source, None)
            self.latest[item.source] = item.step + 1
            out += self._close_ranks(final=False)
            return out
        if not isinstance(item, CallRecord):
            return out
        vals = _values(item)
        if not vals:
            return out
        src, api, step = item.source, item.api, item.meta.get("step")
        entry = (make_row(call_fields(item)), vals, item)
        if self._wants(("arg", api, "step")):
            out += self._close_step(src, step)
            grp = self.step_groups.setdefault((src, api), (step, []))
            grp[1].append(entry)
        if self._wants(("arg", api, "ranks")):
            k = self.counts.get((src, step, api), 0)
            self.counts[(src, step, api)] = k + 1
            self.rank_groups.setdefault((step, api, k), {})[src] = entry
        return out

    def _close_step(self, src: int, step: Any) -> list[Obs]:
        out = []
        for key in [k for k in self.step_groups if k[0] == src]:
            gstep, entries = self.step_groups[key]
            if gstep == step:
                continue
            del self.step_groups[key]
            if len(entries) >= 2:
                out.append(self._obs(("arg", key[1], "step"), entries, ("distinct",), gstep,
                                     (src, gstep)))
        return out

    def _close_ranks(self, final: bool) -> list[Obs]:
        out = []
        low = min(self.latest.values()) if self.latest else 0
        top = max(self.latest.values()) if self.latest else 0
        for key in sorted(self.rank_groups, key=repr):
            step = key[0]
            done = final or (isinstance(step, int) and (step < low or step < top - _KEEP_STEPS))
            if not done:
                continue
            group = self.rank_groups.pop(key)
            self.counts = {k: v for k, v in self.counts.items() if k[1] != step} if not final \
                else self.counts
            if len(group) >= 2:
                entries = [group[s] for s in sorted(group)]
                out.append(self._obs(("arg", key[1], "ranks"), entries, ("distinct", "equal"),
                                     step, (key[0], key[2])))
        return out

    def _obs(self, fam: tuple, entries: list[_Entry], kinds: tuple[str, ...], step: Any,
             group: Any) -> Obs:
        labels = _judge(entries, kinds)
        seeds = set()
        for lab in labels:
            if lab[0] == "equal":
                v = entries[0][1][lab[1]]
                old = self.prev_equal.get((fam[1], lab[1]), v)
                self.prev_equal[(fam[1], lab[1])] = v
                if old == v:
                    continue
            seeds.add(lab)
        call = entries[0][2]
        observed = [{k: e[1].get(k) for k in sorted(e[1])} for e in entries[:4]]
        return Obs(family=fam, rows=tuple(sorted(e[0] for e in entries)), labels=labels,
                   seeds=frozenset(seeds), group=group, source=call.source,
                   step=step if isinstance(step, int) else None,
                   rank=meta_int(call.meta, "rank") if fam[2] == "step" else None, call=call,
                   observed=observed)

    def finish(self) -> Iterable[Obs]:
        out = []
        for src in sorted({k[0] for k in self.step_groups}):
            out += self._close_step(src, object())
        return out + self._close_ranks(final=True)


class APIArg(TemplateRelation):
    name = "APIArg"
    description = ("an API's argument is distinct across its calls within a step or across "
                   "ranks, or equal across ranks")

    def collector(self, wanted: set[tuple] | None = None, detail: bool = False) -> Collector:
        return _ArgCollector(wanted, detail)

    def params(self, family: tuple, label: Any) -> dict[str, Any]:
        return {"api": family[1], "scope": family[2], "kind": label[0], "arg": label[1]}

    def key(self, params: dict[str, Any]) -> tuple[tuple, Any]:
        return ("arg", params["api"], params["scope"]), (params["kind"], params["arg"])

    def plan(self, inv: Invariant) -> PlanPart:
        api = inv.params["api"]
        return PlanPart(apis={api}, arg_content={api})  # it compares argument fingerprints

    def text(self, params: dict[str, Any], subjects: Sequence[str], cond: str) -> str:
        api, arg = short_api(params["api"]), params["arg"]
        c = f" {cond}" if cond else ""
        if params["scope"] == "step":
            return f"{api}() gets a different `{arg}` on every call within a step{c}"
        how = "a different" if params["kind"] == "distinct" else "the same"
        return f"{api}() gets {how} `{arg}` on every rank at the same step{c}"

    def hint(self, params: dict[str, Any]) -> str:
        if params["kind"] == "distinct":
            return ("the same value was reused: a seed or sampler not set per rank/epoch, "
                    "data not sharded across ranks, or a batch fed twice")
        return "ranks disagree on a value they should share: rank-dependent configuration"

    def message(self, inv: Invariant, negs: list[Obs], total: int) -> tuple[str, Any, Any]:
        p = inv.params
        o = negs[0]
        who = f"`{call_label(o.call)}`" if o.call is not None else f"`{short_api(p['api'])}()`"
        where = f" at step {o.step}" if o.step is not None else ""
        vals = [v.get(p["arg"]) for v in (o.observed or [])]
        if p["scope"] == "step":
            scope = "calls within the step"
        else:
            scope = "ranks"
        want = "distinct" if p["kind"] == "distinct" else "equal"
        return (f"{who}{where}: `{p['arg']}` is not {want} across {scope} ({vals})",
                f"{want} {p['arg']}", vals)
