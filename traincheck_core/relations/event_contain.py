"""EventContain: every call of API A contains a given child event.

Two kinds of child event:

* a **variable change** — across the call, attribute ``attr`` of a variable goes through a
  generalized transition: ``changed`` (set before and after, different), ``to_none`` (reset to
  None) or ``set`` (None before, set after). One example per (call of A, variable known in the
  process when the call started); the precondition reads the call (meta, arguments, enclosing
  calls) and the variable's state *before* the call. This yields "the optimizer step changes
  every parameter that has a gradient" and "zero_grad resets gradients";
* a **child call** — a call of API B nested (at any depth) in the call of A. One example per
  call of A.

Rows carry the variable's stable name (``var.name``), so a variable that the rule does not fit
by itself can be named as an exception (:func:`~traincheck_core.preconditions.
infer_with_exceptions`). Each process keeps a count of its variables by row, updated as states
change. During inference a call costs O(variables it or its enclosing call changed): the
variables it left unchanged are folded per (API, call row, counts per row before the call) and
become weighted examples only at the end, so a module forward nested in every step's forward
adds one counter increment, not one example per variable row, and the accumulated examples
stay as small as (variables x distinct states). Checking judges the variables a call
left unchanged by their rows (with the checker's cached precondition verdicts) and enumerates
them, to name them in messages, only when one of them may be a negative.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ..analysis.assembler import CallRecord, Item, VarChange
from ..invariants import Invariant
from ..preconditions import Row
from .base import PlanPart, content_rules
from .common import (
    Collector,
    Interner,
    Obs,
    TemplateRelation,
    VarRows,
    call_label,
    call_row,
    count_folded,
    meta_int,
    name_list,
    short_api,
    unfold,
    walk_calls,
)

__all__ = ["EventContain", "transition"]

_VERBS = {"changed": ("changes", "changed"), "to_none": ("resets", "reset"),
          "set": ("sets", "set")}


def transition(before: Any, after: Any) -> str | None:
    """The generalized transition of one attribute value, or None if it did not change."""
    if before == after:
        return None
    if after is None:
        return "to_none"
    if before is None:
        return "set"
    return "changed"


def _labels(before: dict[str, Any], after: dict[str, Any]) -> frozenset:
    out = set()
    for k in before.keys() | after.keys():
        t = transition(before.get(k), after.get(k))
        if t is not None:
            out.add((k, t))
    return frozenset(out)


class _Proc:
    """One process's variables: last state, vtype, and a count of variables per row."""

    __slots__ = ("states", "vtypes", "rows", "counts", "births", "snap")

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any]] = {}
        self.vtypes: dict[str, str] = {}
        self.rows: dict[str, Row] = {}
        self.counts: Counter = Counter()
        self.births: list[tuple[int, str]] = []  # (time first seen, name), in time order
        self.snap: frozenset | None = None  # ``counts`` as a frozenset; None: out of date

    def born_since(self, t0: int) -> list[str]:
        """Variables first seen at or after ``t0`` (e.g. optimizer state created by a call)."""
        out = []
        for t, name in reversed(self.births):
            if t < t0:
                break
            out.append(name)
        return out

    def update(self, ch: VarChange, rows: VarRows) -> None:
        old = self.rows.get(ch.name)
        if old is None:
            self.births.append((ch.t, ch.name))
        else:
            self.counts[old] -= 1
        row = rows.var_row(ch.after, ch.vtype, ch.name)
        self.states[ch.name] = ch.after
        self.vtypes[ch.name] = ch.vtype
        self.rows[ch.name] = row
        self.counts[row] += 1
        if row is not old:  # rows are shared per content: the same object, the same counts
            self.snap = None

    def snapshot(self, intern: Interner) -> frozenset:
        """The counts per row, hashable and shared while they do not change (a frozenset
        keeps its hash, so keys holding it hash cheaply)."""
        if self.snap is None:
            self.snap = intern(frozenset((r, n) for r, n in self.counts.items() if n))
        return self.snap


class _Changes:
    """The variable changes of one top-level call, in time order, and what undoing those
    made at or after an instant takes. Calls that start between the same two changes (most
    calls nested in a forward) share the answer: it is computed once per such instant."""

    __slots__ = ("changes", "times", "_since", "_undo")

    def __init__(self, changes: list[VarChange]) -> None:
        self.changes = changes
        self.times = [c.t for c in changes]
        self._since: dict[int, dict[str, dict[str, Any] | None]] = {}
        self._undo: dict[int, Counter] = {}

    def since(self, t0: int) -> dict[str, dict[str, Any] | None]:
        """Variable name -> its state before its first change at or after ``t0``."""
        i = bisect_left(self.times, t0)
        got = self._since.get(i)
        if got is None:
            got = self._since[i] = {}
            for ch in self.changes[i:]:
                if ch.name not in got:
                    got[ch.name] = ch.before
        return got

    def undo(self, t0: int, proc: _Proc, rows: VarRows) -> Counter:
        """Counts per row that undoing the changes since ``t0`` adds to ``proc``'s counts
        (no variable born since ``t0``). Read-only for the caller."""
        i = bisect_left(self.times, t0)
        got = self._undo.get(i)
        if got is None:
            got = self._undo[i] = Counter()
            for name, before in self.since(t0).items():
                cur = proc.rows.get(name)
                if cur is not None:
                    got[cur] -= 1
                if before is not None:
                    got[rows.var_row(before, proc.vtypes.get(name), name)] += 1
        return got


def _vfam(api: str, vrow: Row) -> tuple:
    """Variable hypotheses are per variable type: what a call does to parameters and what it
    does to buffers or optimizer state are different rules (and mixing them leaves no
    precondition that reads well, e.g. "changes every parameter that has a gradient")."""
    for k, v in reversed(vrow):  # fields are sorted: var.vtype is near the end
        if k == "var.vtype":
            return ("contain_var", api, v)
    return ("contain_var", api, None)


def _merge(a: Row, b: Row) -> tuple[Row]:
    # the call's fields then the variable's: a fixed order is all equality needs
    return (a + b,)


class _ContainCollector(Collector):
    def __init__(self, wanted: set[tuple] | None, detail: bool) -> None:
        self.wanted = wanted
        self.detail = detail
        self.procs: dict[int, _Proc] = {}
        self.rows = VarRows()
        # Inference sees the same (call row, variable row) pairs at every step: their merged
        # row and family are built once and shared, so the accumulator's identity cache hits.
        self.intern = Interner()
        self._pairs: dict[tuple[str, int, int], tuple[Row, Row, tuple, tuple[Row]]] = {}
        # Variables a call left unchanged, folded per (API, call row, counts per row before
        # the call): [call row, calls, first steps]. Module calls nested in a forward change
        # nothing, and the same ones recur every step with the same variable rows; they
        # become weighted examples once, in finish(), not one per variable row per call.
        self._idle: dict[tuple, list] = {}
        self._pending: list[Obs] = []
        self.var_apis = {f[1] for f in wanted or () if f[0] == "contain_var"}
        self._clear: dict[tuple, tuple[Row, frozenset, bool]] = {}  # _rest_clear answers

    def feed(self, item: Item) -> Iterable[Obs]:
        if isinstance(item, VarChange):
            self.procs.setdefault(item.source, _Proc()).update(item, self.rows)
            return ()
        if not isinstance(item, CallRecord):
            return ()
        proc = self.procs.setdefault(item.source, _Proc())
        changes = _Changes(sorted(item.all_changes(), key=lambda c: c.t))
        out: list[Obs] = []
        for call, anc in walk_calls(item):
            want_var = self.wanted is None or call.api in self.var_apis
            want_call = self.wanted is None or ("contain_call", call.api) in self.wanted
            if not (want_var or want_call):
                continue
            crow = self.intern(call_row(call, anc))
            step, rank = meta_int(call.meta, "step"), meta_int(call.meta, "rank")
            if want_call:
                kids = frozenset(d.api for d in call.descendants())
                out.append(Obs(family=("contain_call", call.api), rows=(crow,), labels=kids,
                               group=(item.source, call.id), source=item.source, step=step,
                               rank=rank, call=call, observed=sorted(kids)))
            if want_var:
                out += self._vars(proc, call, crow, changes, item.source, step, rank)
        if self._pending:
            out += self._pending
            self._pending = []
        return out

    def _vars(self, proc: _Proc, call: CallRecord, crow: Row, changes: _Changes,
              source: int, step: int | None, rank: int | None) -> list[Obs]:
        # State before the call: undo the changes (already applied) made since it started.
        pre = changes.since(call.t0)
        mine = sorted(call.all_changes(), key=lambda c: c.t)
        first: dict[str, dict[str, Any] | None] = {}
        last: dict[str, dict[str, Any]] = {}
        for ch in mine:
            first.setdefault(ch.name, ch.before)
            last[ch.name] = ch.after
        api = call.api
        # variables first seen during the call (optimizer state it created) have no state
        # before it: they are not examples
        born = set(proc.born_since(call.t0))
        out: list[Obs] = []
        if self.detail:
            # The variables no change touched since the call started are judged by their
            # rows and counts; they are enumerated only when one of them may be a negative.
            names = set(pre) - born
            if not self._rest_clear(proc, api, crow, pre, born):
                names |= set(proc.states) - born
            for name in sorted(names):
                before = pre[name] if name in pre else proc.states[name]
                if before is None:
                    continue  # first seen during the call: no state to compare with
                after = last.get(name, before)
                vrow = self.rows.var_row(before, proc.vtypes.get(name), name)
                labs = _labels(before, after)
                fam, rows = self._pair(api, crow, vrow)
                out.append(Obs(family=fam, rows=rows, labels=labs,
                               subject=name, group=(source, call.id), source=source, step=step,
                               rank=rank, call=call, observed=sorted(labs)))
            return out
        # the state before the call minus the changed variables, against the state now
        if born:
            counts: Counter = Counter()
            for name in born:
                if name not in pre:
                    counts[proc.rows[name]] -= 1
            for name, before in pre.items():
                cur = proc.rows.get(name)
                if cur is not None:
                    counts[cur] -= 1
                if before is not None and name not in born:
                    counts[self.rows.var_row(before, proc.vtypes.get(name), name)] += 1
        else:
            counts = Counter(changes.undo(call.t0, proc, self.rows))
        for name, after in last.items():
            before = first[name] if name in first else None
            before = pre.get(name, before)
            if before is None or name in born:
                continue
            vrow = self.rows.var_row(before, proc.vtypes.get(name), name)
            counts[vrow] -= 1
            fam, rows = self._pair(api, crow, vrow)
            out.append(Obs(family=fam, rows=rows, labels=self.intern(_labels(before, after)),
                           subject=name, step=step))
        self._defer(api, crow, proc.snapshot(self.intern), counts, step)
        return out

    def _rest_clear(self, proc: _Proc, api: str, crow: Row,
                    pre: dict[str, Any], born: set[str]) -> bool:
        """Whether no variable outside ``pre`` and ``born`` (unchanged across the call, so
        with no label: a negative wherever a precondition holds) is covered by an invariant:
        then they add nothing to the verdict. Needs the checker's ``covers``."""
        if self.covers is None:
            return False
        # the same call rows meet the same variable rows at every step: one answer each
        snap = proc.snapshot(self.intern)
        key = (api, id(crow), id(snap), frozenset(pre.keys() | born))
        hit = self._clear.get(key)
        if hit is not None and hit[0] is crow and hit[1] is snap:
            return hit[2]
        ok = self._rest_clear_now(proc, api, crow, pre, born)
        if len(self._clear) >= 1 << 12:
            self._clear.clear()
        self._clear[key] = (crow, snap, ok)  # holds both: their ids stay unique
        return ok

    def _rest_clear_now(self, proc: _Proc, api: str, crow: Row,
                        pre: dict[str, Any], born: set[str]) -> bool:
        assert self.covers is not None
        gone: Counter = Counter()
        for name in pre.keys() | born:
            r = proc.rows.get(name)
            if r is not None:
                gone[r] += 1
        for vrow, n in proc.counts.items():
            if n - gone.get(vrow, 0) <= 0:
                continue
            fam, rows = self._pair(api, crow, vrow)
            if self.covers(fam, rows):
                return False
        return True

    def _defer(self, api: str, crow: Row, snap: frozenset, delta: Counter,
               step: int | None) -> None:
        """Count one call's unchanged variables: ``snap`` (the process's counts per row)
        adjusted by ``delta`` (the state before the call, minus the changed variables)."""
        dkey = frozenset((r, n) for r, n in delta.items() if n)
        key = (api, id(crow), snap, dkey)
        got = self._idle.get(key)
        if got is None or got[0] is not crow:
            if len(self._idle) >= 1 << 14 or got is not None:
                self._pending += self._flush()  # bound the memory; or an id was reused
            got = self._idle[key] = [crow, 0, ()]
        count_folded(got, step)

    def _flush(self) -> list[Obs]:
        """The folded unchanged-variable examples: per call group and row, weight = calls x
        variables; the first distinct steps of the group ride on extra weightless examples."""
        out: list[Obs] = []
        empty = self.intern(frozenset())
        for (api, _, snap, dkey), (crow, calls, steps) in self._idle.items():
            counts = Counter(dict(snap))
            counts.update(dict(dkey))
            for vrow, n in counts.items():
                if n <= 0:
                    continue
                fam, rows = self._pair(api, crow, vrow)
                out += unfold(fam, rows, empty, n * calls, steps)
        self._idle.clear()
        return out

    def finish(self) -> Iterable[Obs]:
        out, self._pending = self._pending + self._flush(), []
        return out

    def _pair(self, api: str, crow: Row, vrow: Row) -> tuple[tuple, tuple[Row]]:
        """The family and merged rows of a call row and a variable row (both interned)."""
        key = (api, id(crow), id(vrow))
        hit = self._pairs.get(key)
        if hit is not None and hit[0] is crow and hit[1] is vrow:
            return hit[2], hit[3]
        fam, rows = _vfam(api, vrow), _merge(crow, vrow)
        if len(self._pairs) >= 1 << 16:
            self._pairs.clear()
        self._pairs[key] = (crow, vrow, fam, rows)  # holds both rows: their ids stay unique
        return fam, rows


class EventContain(TemplateRelation):
    name = "EventContain"
    description = ("every call of API A contains a child event: a change of a variable "
                   "attribute (changed / reset to None / set), or a nested call of API B")

    def collector(self, wanted: set[tuple] | None = None, detail: bool = False) -> Collector:
        return _ContainCollector(wanted, detail)

    def params(self, family: tuple, label: Any) -> dict[str, Any]:
        kind, api = family[:2]
        if kind == "contain_var":
            return {"kind": "var", "api": api, "vtype": family[2], "attr": label[0],
                    "change": label[1]}
        return {"kind": "call", "api": api, "child": label}

    def key(self, params: dict[str, Any]) -> tuple[tuple, Any]:
        if params["kind"] == "var":
            return (("contain_var", params["api"], params.get("vtype")),
                    (params["attr"], params["change"]))
        return ("contain_call", params["api"]), params["child"]

    def plan(self, inv: Invariant) -> PlanPart:
        p = inv.params
        if p["kind"] == "var":
            # "set" and "to_none" need only whether the attribute is set before and after the
            # call; "changed" compares content, across every call of the API, but only each
            # variable's before and after
            content = [] if p["change"] != "changed" else content_rules(
                p["attr"], inv.precondition, vtype=p.get("vtype"), changes=True)
            return PlanPart(apis={p["api"]}, attributes={p["attr"]}, content=content)
        return PlanPart(apis={p["api"], p["child"]})

    def text(self, params: dict[str, Any], subjects: Sequence[str], cond: str) -> str:
        api = short_api(params["api"])
        if params["kind"] == "call":
            return f"every {api} call contains a call of {short_api(params['child'])}" + (
                f" {cond}" if cond else "")
        verb = _VERBS[params["change"]][0]
        what = "to None " if params["change"] == "to_none" else ""
        names = f" ({name_list(subjects)})" if subjects else ""
        vt = params.get("vtype")
        var = vt.rsplit(".", 1)[-1] if isinstance(vt, str) and vt else "variable"
        if params["attr"] == "grad" and params["change"] == "to_none":
            head = f"{api} resets the gradient of every {var} to None"
        elif params["attr"] == "data" and params["change"] == "changed":
            head = f"{api} changes the value (`data`) of every {var}"
        else:
            head = f"{api} {verb} `{params['attr']}` {what}of every {var}"
        return f"{head}{' ' + cond if cond else ''}{names}"

    def hint(self, params: dict[str, Any]) -> str:
        if params["kind"] == "call":
            return (f"{short_api(params['api'])} took another code path: a changed "
                    "configuration, a different implementation, or an early return")
        if params["attr"] == "grad" and params["change"] == "to_none":
            return ("gradients were not cleared: the call went to another optimizer or model, "
                    "set_to_none=False, or the parameters are not in its parameter groups")
        if params["change"] == "changed":
            return ("the variables are not in the optimizer's parameter groups (a layer "
                    "added or replaced after the optimizer was built), their gradients are "
                    "zero/cleared before the step, the learning rate is 0, or the step was "
                    "skipped")
        return "the call no longer updates these variables"

    def message(self, inv: Invariant, negs: list[Obs], total: int) -> tuple[str, Any, Any]:
        p = inv.params
        call = negs[0].call
        who = f"`{call_label(call)}`" if call is not None else f"`{short_api(p['api'])}()`"
        where = _where(negs[0])
        if p["kind"] == "call":
            return (f"{who}{where} did not call {short_api(p['child'])}, which every reference "
                    f"call did", p["child"], negs[0].observed)
        names = [o.subject for o in negs if o.subject]
        past = _VERBS[p["change"]][1]
        attr = p["attr"]
        if len(negs) == total:
            msg = (f"{who}{where} {past} `{attr}` of none of the {total} variables it "
                   f"normally {_VERBS[p['change']][0]}: {name_list(names)}")
        else:
            msg = (f"{who}{where} left `{attr}` of {len(negs)} of {total} variables "
                   f"un{past}: {name_list(names)}")
        return msg, f"{attr} {p['change']}", {"not_" + past: names[:20]}


def _where(o: Obs) -> str:
    parts = []
    if o.step is not None:
        parts.append(f"step {o.step}")
    if o.rank is not None:
        parts.append(f"rank {o.rank}")
    return (" at " + ", ".join(parts)) if parts else ""
