"""Machinery shared by the built-in templates: observations, accumulation, a generic checker.

Every built-in template is written as one incremental :class:`Collector` that turns analysis
items into :class:`Obs` — one example of a *family* of hypotheses, with the rows the
precondition may use and the set of hypotheses (``labels``) the example is positive for.
Inference and checking run the very same collector, which is what keeps them consistent:

* inference (:meth:`TemplateRelation.infer`) adds observations to an :class:`Accumulator`
  (distinct examples with counts, so memory grows with the variety of examples, not with the
  trace length), then asks :func:`~traincheck_core.preconditions.infer_with_exceptions` for each
  hypothesis (family, label) seen positive at least once;
* checking (:class:`TemplateChecker`) evaluates each deployed invariant's precondition on each
  observation of its family and turns negatives into violations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..analysis.assembler import CallRecord, Item, ProcInfo
from ..invariants import Invariant, Precondition, Violation, invariant_id
from ..preconditions import (
    FINGERPRINT_ATTRS,
    NAME_FIELD,
    Example,
    Row,
    call_fields,
    describe,
    holds,
    infer_with_exceptions,
    make_row,
    var_fields,
)
from .base import Relation, RelationChecker, RunItems, TriggerStats

__all__ = ["Obs", "Collector", "Accumulator", "TemplateRelation", "TemplateChecker",
           "walk_calls", "short_api", "call_label", "name_list", "meta_int", "MAX_SUBJECTS",
           "MIN_STEPS", "count_folded", "unfold", "Interner", "VarRows", "state_key", "call_row"]

MAX_SUBJECTS = 64  # subject names kept per hypothesis, for readable texts
#: An invariant needs positive examples at this many distinct steps. Setup code (building the
#: model, initializing weights, building the optimizer) runs once, at step 0: one occasion
#: cannot tell a rule from a coincidence of that script, and such "invariants" (init.uniform_
#: gets a different `1` on every call; register_parameter precedes init when shape = [16])
#: only produce false alarms and clutter. This counts occasions, it is not a ratio threshold.
MIN_STEPS = 2
_FAST_LIMIT = 4096  # identity-cache entries per family (Accumulator.add)


@dataclass(slots=True)
class Obs:
    """One example of hypothesis family ``family``: positive for every label in ``labels``.

    ``seeds`` are the labels this example may *start* a hypothesis for (default: all of
    ``labels``); templates use it to skip trivial hypotheses. ``weight`` counts identical
    examples folded into one. The rest is context for violation messages (checking only).
    """

    family: tuple
    rows: Example
    labels: frozenset
    weight: int = 1
    subject: str | None = None
    seeds: frozenset | None = None
    group: Any = None  # negatives of one invariant with the same group make one violation
    source: int = -1
    step: int | None = None
    rank: int | None = None
    call: CallRecord | None = None
    observed: Any = None


class Collector:
    """Turns analysis items into observations, incrementally.

    ``covers`` (set by a checker): whether some invariant's precondition holds for an
    example of a family. A collector may skip observations with no label that nothing
    covers: they cannot change a verdict."""

    covers: Callable[[tuple, Example], bool] | None = None

    def feed(self, item: Item) -> Iterable[Obs]:
        raise NotImplementedError

    def finish(self) -> Iterable[Obs]:
        return ()


class Interner:
    """One shared object per distinct value (rows, label sets): a collector that builds an
    equal row again hands out the first one, so identity caches downstream
    (:meth:`Accumulator.add`) hit. Cleared when full, which bounds its memory."""

    def __init__(self, limit: int = 1 << 16) -> None:
        self.limit = limit
        self._seen: dict[Any, Any] = {}

    def __call__(self, value: Any) -> Any:
        got = self._seen.get(value)
        if got is None:
            if len(self._seen) >= self.limit:
                self._seen.clear()
            self._seen[value] = got = value
        return got


_STATE_KEYS: dict[int, tuple[dict[str, Any], tuple | None]] = {}


def state_key(attrs: dict[str, Any]) -> tuple:
    """What a variable state's row depends on: fingerprints only by presence (they change
    every step, the row does not), other values with their types (1 and True give different
    rows). Raises TypeError when a value is not hashable. Several templates read each new
    state: the key is kept for the last states seen (the entry holds the dict)."""
    hit = _STATE_KEYS.get(id(attrs))
    if hit is None or hit[0] is not attrs:
        try:
            key: tuple | None = _state_key(attrs)
        except TypeError:
            key = None
        if len(_STATE_KEYS) >= 1024:
            _STATE_KEYS.clear()
        hit = _STATE_KEYS[id(attrs)] = (attrs, key)
    if hit[1] is None:
        raise TypeError("unhashable attribute value")
    return hit[1]


def _state_key(attrs: dict[str, Any]) -> tuple:
    key: list[tuple] = []
    for k, v in attrs.items():
        if k in FINGERPRINT_ATTRS:
            key.append((k, v is not None))
        elif type(v) is list:
            key.append((k, list, tuple((type(x), x) for x in v)))
        else:
            key.append((k, type(v), v))
    out = tuple(key)
    hash(out)
    return out


class VarRows:
    """Rows of variable states, by the identity of the state's attribute dict and, across
    states, by content: every variable gets a new state (a new fingerprint) each step, and
    the row of an equal state is the same object as before, built once."""

    def __init__(self, limit: int = 1 << 16) -> None:
        self.limit = limit
        self._by_id: dict[int, tuple[Any, Any, Any, Row]] = {}
        self._by_content: dict[tuple, Row] = {}

    def var_row(self, attrs: dict[str, Any], vtype: str | None = None,
                name: str | None = None) -> Row:
        hit = self._by_id.get(id(attrs))
        if hit is not None and hit[0] is attrs and hit[1] == vtype and hit[2] == name:
            return hit[3]
        try:
            ckey: tuple | None = (vtype, name, state_key(attrs))
        except TypeError:
            ckey = None
        row = self._by_content.get(ckey) if ckey is not None else None
        if row is None:
            row = make_row(var_fields(attrs, vtype, name))
            if ckey is not None:
                if len(self._by_content) >= self.limit:
                    self._by_content.clear()
                self._by_content[ckey] = row
        if len(self._by_id) >= self.limit:
            self._by_id.clear()
        self._by_id[id(attrs)] = (attrs, vtype, name, row)  # holds attrs: its id stays unique
        return row


_CALL_ROWS: dict[int, tuple[CallRecord, tuple[str, ...], Row]] = {}


def call_row(call: CallRecord, ancestors: tuple[str, ...] = ()) -> Row:
    """``make_row(call_fields(call, ancestors))``, built once for the templates that read
    the same call one after the other (the entry holds the call: its id stays unique)."""
    hit = _CALL_ROWS.get(id(call))
    if hit is not None and hit[0] is call and hit[1] == ancestors:
        return hit[2]
    row = make_row(call_fields(call, ancestors))
    if len(_CALL_ROWS) >= 1024:
        _CALL_ROWS.clear()
    _CALL_ROWS[id(call)] = (call, ancestors, row)
    return row


@dataclass
class _Hyp:
    subjects: set[str] = field(default_factory=set)
    runs: set[str] = field(default_factory=set)


def count_folded(entry: list, step: Any) -> None:
    """Count one more occurrence of a folded example ``[payload, count, steps]``, keeping up
    to :data:`MIN_STEPS` of the distinct steps it was seen at."""
    entry[1] += 1
    if len(entry[2]) < MIN_STEPS and step not in entry[2]:
        entry[2] += (step,)


def unfold(family: tuple, rows: tuple, labels: Any, weight: int, steps: tuple,
           subject: str | None = None) -> list[Obs]:
    """A folded example as observations: its whole weight at its first step, and weightless
    copies at the other steps it was seen at, so step evidence survives the folding."""
    return [Obs(family=family, rows=rows, labels=labels, subject=subject,
                weight=weight if i == 0 else 0, step=st) for i, st in enumerate(steps)]


def _add_step(entry: list, step: Any) -> None:
    got = entry[1]
    if len(got) < MIN_STEPS and step not in got:
        entry[1] = got + (step,)


class Accumulator:
    """Distinct examples per family with counts, and per hypothesis its subjects and runs.

    ``examples[family]`` maps each distinct example ``(rows, labels)`` to ``[count, steps]``,
    where ``steps`` holds up to :data:`MIN_STEPS` of the steps it was seen at: all
    :meth:`TemplateRelation.decide_one` needs to tell a recurring behaviour from a one-off
    (one dictionary entry per example keeps the hot path at one hash per observation).
    Mergeable (:meth:`merge`) and picklable, so runs can be collected in worker processes.
    """

    def __init__(self) -> None:
        self.examples: dict[tuple, dict[tuple, list]] = {}
        self.hyps: dict[tuple, dict[Any, _Hyp]] = {}
        # Per family: (id(rows), id(labels)) -> (rows, labels, entry). Collectors that hand
        # out the same row objects again (see Interner) skip hashing the rows, which are
        # long tuples, on every observation. Each hit holds its objects, so an id is never
        # reused while it is cached; process-local, so not pickled.
        self._fast: dict[tuple, dict[tuple[int, int], tuple[Any, Any, list]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"examples": self.examples, "hyps": self.hyps}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.examples, self.hyps, self._fast = state["examples"], state["hyps"], {}

    def add(self, run_id: str, obs: Iterable[Obs]) -> None:
        examples, all_hyps, all_fast = self.examples, self.hyps, self._fast
        for o in obs:
            fam = o.family
            ex = examples.get(fam)
            if ex is None:
                ex = examples[fam] = {}
                all_hyps[fam] = {}
            fast = all_fast.get(fam)
            if fast is None:
                fast = all_fast[fam] = {}
            rows, labels = o.rows, o.labels
            hit = fast.get((id(rows), id(labels)))
            if hit is not None and hit[0] is rows and hit[1] is labels:
                entry = hit[2]
            else:
                got = ex.get((rows, labels))
                if got is None:
                    got = ex[(rows, labels)] = [0, ()]
                entry = got
                if len(fast) >= _FAST_LIMIT:
                    fast.clear()  # rows built afresh for each observation: bound the memory
                fast[(id(rows), id(labels))] = (rows, labels, entry)
            if not entry[1]:
                entry[0], entry[1] = o.weight, (o.step,)
            else:
                entry[0] += o.weight
                if len(entry[1]) < MIN_STEPS and o.step not in entry[1]:
                    entry[1] = entry[1] + (o.step,)
            if not o.labels:
                continue
            hyps = all_hyps[fam]
            seeds = o.labels if o.seeds is None else o.seeds
            for lab in o.labels:
                h = hyps.get(lab)
                if h is None:
                    if lab not in seeds:
                        continue
                    h = hyps[lab] = _Hyp()
                h.runs.add(run_id)
                if o.subject is not None and len(h.subjects) < MAX_SUBJECTS:
                    h.subjects.add(o.subject)

    def merge(self, other: Accumulator) -> None:
        for fam, ex in other.examples.items():
            mine_ex = self.examples.setdefault(fam, {})
            for key, (n, steps) in ex.items():
                entry = mine_ex.get(key)
                if entry is None:
                    mine_ex[key] = [n, steps]
                    continue
                entry[0] += n
                for step in steps:
                    _add_step(entry, step)
        for fam, hyps in other.hyps.items():
            mine = self.hyps.setdefault(fam, {})
            for lab, h in hyps.items():
                m = mine.setdefault(lab, _Hyp())
                m.runs |= h.runs
                if len(m.subjects) < MAX_SUBJECTS:
                    m.subjects |= set(sorted(h.subjects)[: MAX_SUBJECTS - len(m.subjects)])

    def hypotheses(self) -> Iterator[tuple[tuple, Any]]:
        for fam in sorted(self.hyps, key=repr):
            for lab in sorted(self.hyps[fam], key=repr):
                yield fam, lab

    def part(self, fam: tuple) -> Accumulator:
        """Just family ``fam`` (shared, not copied): a unit of work for a worker."""
        acc = Accumulator()
        acc.hyps[fam] = self.hyps[fam]
        if fam in self.examples:
            acc.examples[fam] = self.examples[fam]
        return acc

    def add_part(self, other: Accumulator) -> None:
        """Take over ``other``'s families (disjoint from ours)."""
        self.hyps.update(other.hyps)
        self.examples.update(other.examples)

    def recurs(self, fam: tuple, lab: Any, pre: Precondition) -> bool:
        """Whether the positives of ``lab`` that ``pre`` covers were seen at two or more
        distinct steps."""
        seen: set = set()
        for (rows, labels), (_, steps) in self.examples.get(fam, {}).items():
            if lab in labels and holds(pre, rows):
                seen.update(steps)
                if len(seen) >= MIN_STEPS:
                    return True
        return False

    def split(self, fam: tuple, lab: Any) -> tuple[Counter, Counter]:
        pos: Counter = Counter()
        neg: Counter = Counter()
        for (rows, labels), (n, _) in self.examples.get(fam, {}).items():
            (pos if lab in labels else neg)[rows] += n
        return pos, neg


def frameworks_seen(runs: Iterable[str], frameworks: dict[str, dict[str, str]]
                    ) -> dict[str, list[str]]:
    """The framework versions recorded by the given runs, sorted: an invariant's provenance."""
    seen: dict[str, set[str]] = {}
    for r in runs:
        for fw, ver in frameworks.get(r, {}).items():
            seen.setdefault(fw, set()).add(ver)
    return {k: sorted(v) for k, v in sorted(seen.items())}


def walk_calls(call: CallRecord, ancestors: tuple[str, ...] = ()
               ) -> Iterator[tuple[CallRecord, tuple[str, ...]]]:
    """``call`` and every call nested in it, in start order, with the APIs enclosing each."""
    yield call, ancestors
    inner = ancestors + (call.api,)
    for c in sorted(call.children, key=lambda c: c.t0):
        yield from walk_calls(c, inner)


def short_api(api: str) -> str:
    """``torch.optim.Optimizer.step`` -> ``Optimizer.step``."""
    parts = api.split(".")
    return ".".join(parts[-2:]) if len(parts) > 1 else api


def call_label(call: CallRecord) -> str:
    """``Adadelta.step()``: the concrete class of ``self`` when known, else the API."""
    method = call.api.rsplit(".", 1)[-1]
    selfarg = call.args.get("self")
    typ = getattr(selfarg, "type", None)
    if isinstance(typ, str) and typ:
        return f"{typ.rsplit('.', 1)[-1]}.{method}()"
    return f"{short_api(call.api)}()"


def name_list(names: Iterable[str], limit: int = 3) -> str:
    ns = sorted(names)
    if len(ns) <= limit:
        return ", ".join(ns)
    return ", ".join(ns[:limit]) + f", … {len(ns)} in all"


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def meta_int(meta: dict[str, Any], key: str) -> int | None:
    """An integer meta variable (step, rank), or None."""
    return _int_or_none(meta.get(key))


class TemplateRelation(Relation):
    """A relation built from a :class:`Collector`; subclasses say how to read and word it."""

    def collector(self, wanted: set[tuple] | None = None, detail: bool = False) -> Collector:
        """A fresh collector. ``wanted``: only these families matter (checking);
        ``detail``: one observation per example with context for messages."""
        raise NotImplementedError

    def params(self, family: tuple, label: Any) -> dict[str, Any]:
        raise NotImplementedError

    def key(self, params: dict[str, Any]) -> tuple[tuple, Any]:
        """The inverse of :meth:`params`: (family, label)."""
        raise NotImplementedError

    def text(self, params: dict[str, Any], subjects: Sequence[str], cond: str) -> str:
        raise NotImplementedError

    def hint(self, params: dict[str, Any]) -> str:
        return ""

    def message(self, inv: Invariant, negs: list[Obs], total: int) -> tuple[str, Any, Any]:
        """(message, expected, observed) for the negatives of one group."""
        raise NotImplementedError

    # -- inference -----------------------------------------------------------------------
    def collect(self, run: RunItems, acc: Accumulator) -> None:
        col = self.collector()
        for item in run.items:
            acc.add(run.run_id, col.feed(item))
        acc.add(run.run_id, col.finish())

    def infer(self, runs: Sequence[RunItems]) -> list[Invariant]:
        acc = Accumulator()
        frameworks: dict[str, dict[str, str]] = {}
        for run in runs:
            self.collect(run, acc)
            frameworks[run.run_id] = dict(run.frameworks)
        return self.decide(acc, frameworks)

    def decide(self, acc: Accumulator, frameworks: dict[str, dict[str, str]]
               ) -> list[Invariant]:
        out = []
        for fam, lab in acc.hypotheses():
            inv = self.decide_one(acc, fam, lab, frameworks)
            if inv is not None:
                out.append(inv)
        return out

    def decide_one(self, acc: Accumulator, fam: tuple, lab: Any,
                   frameworks: dict[str, dict[str, str]]) -> Invariant | None:
        pos, neg = acc.split(fam, lab)
        pre = infer_with_exceptions(pos, neg)
        if pre is None or not acc.recurs(fam, lab, pre):
            return None
        h = acc.hyps[fam][lab]
        params = self.params(fam, lab)
        npos = sum(n for ex, n in pos.items() if holds(pre, ex))
        nneg = sum(neg.values())
        if npos == 0:
            return None
        return self.build(params, pre, self._subjects(pos, pre, h), (npos, nneg), h.runs,
                          frameworks)

    def build(self, params: dict[str, Any], pre: Precondition, subjects: Sequence[str],
              support: tuple[int, int], runs: Iterable[str],
              frameworks: dict[str, dict[str, str]]) -> Invariant:
        """The invariant this template states for ``params`` under ``pre``."""
        runs = sorted(runs)
        return Invariant(
            id=invariant_id(self.name, params, pre), relation=self.name, params=params,
            precondition=pre, text=self.text(params, subjects, describe(pre)),
            hint=self.hint(params),
            support={"positive": support[0], "negative": support[1], "runs": len(runs)},
            runs=runs, frameworks=frameworks_seen(runs, frameworks))

    @staticmethod
    def _subjects(pos: Counter, pre: Precondition, h: _Hyp) -> list[str]:
        """The variables the invariant covers, when examples name them; else its subjects."""
        names: set[str] = set()
        for ex in pos:
            if holds(pre, ex):
                names.update(v for r in ex for k, v in r if k == NAME_FIELD)
        return sorted(names)[:MAX_SUBJECTS] if names else sorted(h.subjects)

    # -- checking ------------------------------------------------------------------------
    def checker(self, invariants: Sequence[Invariant]) -> RelationChecker:
        return TemplateChecker(self, invariants)


class TemplateChecker(RelationChecker):
    """Runs the template's collector and judges each observation against the invariants."""

    def __init__(self, rel: TemplateRelation, invariants: Sequence[Invariant]) -> None:
        self.rel = rel
        self.by_family: dict[tuple, list[tuple[Invariant, Any]]] = {}
        for inv in invariants:
            fam, lab = rel.key(inv.params)
            self.by_family.setdefault(fam, []).append((inv, lab))
        self.collector = rel.collector(set(self.by_family), detail=True)
        self.collector.covers = self._covers
        # precondition verdicts per (invariant, example): collectors share equal examples
        self._verdicts: dict[tuple[str, int], tuple[Example, bool]] = {}
        self._stats = {inv.id: TriggerStats() for inv in invariants}
        self._ranks: dict[int, int | None] = {}

    def feed(self, item: Item) -> list[Violation]:
        if isinstance(item, ProcInfo):
            self._ranks[item.source] = _int_or_none(item.rank)
        return self._judge(self.collector.feed(item))

    def finish(self) -> list[Violation]:
        return self._judge(self.collector.finish())

    def stats(self) -> dict[str, TriggerStats]:
        return self._stats

    def _holds(self, inv: Invariant, ex: Example) -> bool:
        key = (inv.id, id(ex))
        hit = self._verdicts.get(key)
        if hit is not None and hit[0] is ex:
            return hit[1]
        ok = holds(inv.precondition, ex)
        if len(self._verdicts) >= 1 << 16:
            self._verdicts.clear()
        self._verdicts[key] = (ex, ok)  # holds the example: its id stays unique
        return ok

    def _covers(self, family: tuple, ex: Example) -> bool:
        return any(self._holds(inv, ex) for inv, _ in self.by_family.get(family, ()))

    def _judge(self, obs: Iterable[Obs]) -> list[Violation]:
        if not obs:  # most items give a template nothing to judge
            return []
        groups: dict[tuple[str, Any], tuple[Invariant, list[Obs], list[int]]] = {}
        for o in obs:
            for inv, lab in self.by_family.get(o.family, ()):
                if not self._holds(inv, o.rows):
                    continue
                g = groups.get((inv.id, o.group))
                if g is None:
                    g = groups[(inv.id, o.group)] = (inv, [], [0])
                g[2][0] += 1
                if lab not in o.labels:
                    g[1].append(o)
        out: list[Violation] = []
        for (inv_id, _), (inv, negs, total) in groups.items():
            st = self._stats[inv_id]
            st.checked += 1
            if negs:
                st.violated += 1
                out.append(self._violation(inv, negs, total[0]))
        return out

    def _violation(self, inv: Invariant, negs: list[Obs], total: int) -> Violation:
        msg, expected, observed = self.rel.message(inv, negs, total)
        first = negs[0]
        rank = first.rank if first.rank is not None else self._ranks.get(first.source)
        evidence = [{"subject": o.subject, "observed": o.observed, "step": o.step}
                    for o in negs[:5]]
        return Violation(invariant=inv.id, relation=inv.relation, message=msg,
                         step=first.step, rank=rank, t=first.call.t1 if first.call else 0,
                         expected=expected, observed=observed, hint=inv.hint,
                         loc=first.call.loc if first.call else None, evidence=evidence)
