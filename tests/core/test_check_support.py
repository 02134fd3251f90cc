"""Test support for the checking tests (no tests here): two small relation templates, a
plugin that contributes them (``-p test_check_support:PLUGIN``), and a synthetic adapter that
emits the events a real training loop would.

* ``test.step_changes``: every call of ``params.api`` changes the ``data`` fingerprint of each
  variable in ``params.vars``.
* ``test.ranks_equal``: at the end of every step, variable ``params.var`` has the same ``data``
  fingerprint on every rank (``params.world`` ranks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from traincheck_core import CallReturn, CallStart, Header, MetaUpdate, VarState, hookimpl
from traincheck_core.analysis.assembler import CallRecord, Item, StepEnd
from traincheck_core.invariants import Invariant, Precondition, Violation, invariant_id
from traincheck_core.relations.base import PlanPart, Relation, RelationChecker, TriggerStats
from traincheck_core.trace.reader import Record


def make_invariant(relation: str, params: dict, text: str = "", hint: str = "") -> Invariant:
    pre = Precondition()
    return Invariant(id=invariant_id(relation, params, pre), relation=relation, params=params,
                     precondition=pre, text=text, hint=hint, support={"positive": 10})


class StepChangesChecker(RelationChecker):
    def __init__(self, invariants: Sequence[Invariant]) -> None:
        self.invs = list(invariants)
        self._stats = {i.id: TriggerStats() for i in self.invs}

    def feed(self, item: Item) -> Iterable[Violation]:
        if not isinstance(item, CallRecord):
            return ()
        out = []
        for inv in self.invs:
            if item.api != inv.params["api"]:
                continue
            changed = {c.name for c in item.all_changes()
                       if c.before is not None and c.before.get("data") != c.after.get("data")}
            seen = {c.name for c in item.all_changes() if c.before is not None}
            want = [v for v in inv.params["vars"] if v in seen]
            if not want:
                continue
            st = self._stats[inv.id]
            st.checked += 1
            missing = [v for v in want if v not in changed]
            if missing:
                st.violated += 1
                out.append(Violation(
                    invariant=inv.id, relation=inv.relation,
                    message=f"{item.api}() changed none of {', '.join(missing)}",
                    expected=f"changes {len(want)} variables", observed=f"unchanged: {missing}",
                    evidence=[{"api": item.api, "loc": item.loc, "unchanged": missing}]))
        return out

    def stats(self) -> dict[str, TriggerStats]:
        return self._stats


class StepChanges(Relation):
    name = "test.step_changes"
    description = "an API call changes given variables"

    def infer(self, runs):
        return []

    def checker(self, invariants):
        return StepChangesChecker(invariants)

    def plan(self, inv):
        return PlanPart(apis={inv.params["api"]}, variables=set(inv.params["vars"]))


class RanksEqualChecker(RelationChecker):
    """Keeps one window per step (fingerprints by rank) and drops it when the step is done."""

    def __init__(self, invariants: Sequence[Invariant]) -> None:
        self.invs = list(invariants)
        self._stats = {i.id: TriggerStats() for i in self.invs}
        self.windows: dict[tuple[str, int], dict[int, object]] = {}

    def feed(self, item: Item) -> Iterable[Violation]:
        if not isinstance(item, StepEnd):
            return ()
        out = []
        rank = item.meta.get("rank") or 0
        for inv in self.invs:
            var = inv.params["var"]
            if var not in item.states:
                continue
            win = self.windows.setdefault((inv.id, item.step), {})
            win[rank] = item.states[var].get("data")
            if len(win) < inv.params["world"]:
                continue
            del self.windows[(inv.id, item.step)]  # evict: every rank reported this step
            self._stats[inv.id].checked += 1
            ref = win.get(0)
            bad = sorted(r for r, fp in win.items() if fp != ref)
            for r in bad:
                out.append(Violation(invariant=inv.id, relation=inv.relation, step=item.step,
                                     rank=r, message=f"{var} on rank {r} differs from rank 0",
                                     expected=ref, observed=win[r]))
        return out

    def stats(self) -> dict[str, TriggerStats]:
        return self._stats


class RanksEqual(Relation):
    name = "test.ranks_equal"
    description = "a variable is equal across ranks after every step"

    def infer(self, runs):
        return []

    def checker(self, invariants):
        return RanksEqualChecker(invariants)

    def plan(self, inv):
        return PlanPart(variables={inv.params["var"]})


class Broken(Relation):
    """A relation whose checker crashes on the first item (fail-open tests)."""

    name = "test.broken"
    description = "always crashes"

    def infer(self, runs):
        return []

    def checker(self, invariants):
        class C(RelationChecker):
            def feed(self, item):
                raise ZeroDivisionError("checker bug")

            def stats(self):
                return {}

        return C()


RELATIONS = {r.name: r for r in (StepChanges(), RanksEqual(), Broken())}


class _Plugin:
    @hookimpl
    def traincheck_relation_templates(self):
        return list(RELATIONS.values())


PLUGIN = _Plugin()

PARAMS = ["model.w1", "model.w2"]


def step_invariant(api: str = "opt.step", vars: Sequence[str] = tuple(PARAMS)) -> Invariant:
    return make_invariant("test.step_changes", {"api": api, "vars": list(vars)},
                          text=f"{api}() changes {', '.join(vars)}",
                          hint="parameters frozen by mistake")


def equal_invariant(var: str = "model.w1", world: int = 2) -> Invariant:
    return make_invariant("test.ranks_equal", {"var": var, "world": world},
                          text=f"{var} is equal on every rank after each step")


class FakeAdapter:
    """Emits what an adapter would for ``steps`` optimizer steps on one rank.

    ``frozen_from``: from that step on, ``model.w2`` stops changing (a frozen parameter).
    ``diverge_from``: from that step on, this rank's fingerprints differ from other ranks'.
    ``set_meta``: a session's, to report each step as adapters do (else a MetaUpdate event).
    """

    def __init__(self, emit, now, next_id, rank: int = 0, set_meta=None) -> None:
        self.emit, self.now, self.next_id, self.rank = emit, now, next_id, rank
        self.set_meta = set_meta

    def step(self, step: int) -> None:
        if self.set_meta is not None:
            self.set_meta(step=step)
        else:
            self.emit(MetaUpdate(t=self.now(), values={"step": step}))

    def fp(self, name: str, step: int, frozen_from: int | None, diverge_from: int | None
           ) -> str:
        if frozen_from is not None and name == "model.w2" and step >= frozen_from:
            step = frozen_from - 1
        tag = f"r{self.rank}" if diverge_from is not None and step >= diverge_from else ""
        return f"{name}:{step}{tag}"

    def run(self, steps: int, frozen_from: int | None = None, diverge_from: int | None = None,
            on_step=None) -> None:
        for name in PARAMS:
            self.emit(VarState(t=self.now(), name=name, vtype="param",
                               attrs={"data": self.fp(name, -1, None, None)}))
        for step in range(steps):
            self.step(step)
            cid = self.next_id()
            self.emit(CallStart(t=self.now(), id=cid, parent=0, api="opt.step", thread=0,
                                loc="train.py:42"))
            for name in PARAMS:
                self.emit(VarState(t=self.now(), name=name, vtype="param", call=cid,
                                   attrs={"data": self.fp(name, step, frozen_from,
                                                          diverge_from)}))
            self.emit(CallReturn(t=self.now(), id=cid))
            if on_step is not None:
                on_step(step)
        self.step(steps)


def synthetic_records(steps: int = 6, ranks: int = 1, frozen_from: int | None = None,
                      diverge_from: int | None = None) -> list[Record]:
    """A merged multi-rank event stream, in time order, as a run directory would give it."""
    clock = iter(range(1, 1 << 40)).__next__
    out: list[Record] = []
    per_rank = []
    for rank in range(ranks):
        events: list = [Header(schema=1, run_id="r", host="h", pid=100 + rank, ppid=1,
                               rank=rank, world_size=ranks, local_rank=rank, python="3.11",
                               traincheck="0", frameworks={"fake": "1.0"}, plugins={}, argv=[],
                               started=0.0, t=0)]
        ids = iter(range(1, 1 << 40)).__next__
        FakeAdapter(events.append, lambda: 0, ids, rank).run(
            steps, frozen_from, diverge_from if rank == ranks - 1 else None)
        per_rank.append(events)
    # interleave ranks event by event with one global clock, like concurrent processes
    longest = max(len(e) for e in per_rank)
    for i in range(longest):
        for rank, events in enumerate(per_rank):
            if i < len(events):
                ev = events[i]
                ev.t = clock()
                out.append(Record(rank, ev))
    return out


def write_run(run_dir, records: list[Record]) -> None:
    """Write a synthetic stream as a run directory: one trace file per process."""
    from pathlib import Path

    from traincheck_core.trace import TraceWriter, trace_file_name

    writers = {}
    for rec in records:
        if rec.source not in writers:
            ev = rec.event
            writers[rec.source] = TraceWriter(
                Path(run_dir) / trace_file_name(ev.host, ev.pid, ev.rank), interval=0)
        writers[rec.source].emit(rec.event)
    for w in writers.values():
        w.close(t=1 << 41)
