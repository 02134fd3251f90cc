"""The one checker engine, shared by online checking (a session sink) and offline checking.

Events go in one at a time (:meth:`CheckEngine.feed_record`); the :class:`Assembler` turns
them into analysis items, which are routed to one :class:`RelationChecker` per relation of the
deployed invariants. Nothing is re-scanned: each process has an open *step window* that
collects what the current step produced and is evicted when the step ends. Each invariant's
first violation on each rank is returned to the caller (to be reported loudly); repeats are
only counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..analysis.assembler import Assembler, CallRecord, Item, StepEnd, VarChange
from ..events import CallStart, VarState
from ..invariants import Invariant, Violation
from ..relations.base import Relation, RelationChecker, TriggerStats
from ..trace.reader import Record
from .plan import matches
from .result import NOT_CALLED, NOT_OBSERVED, CheckResult, InvariantOutcome, outcome_for

__all__ = ["CheckEngine", "CheckerFailure"]

logger = logging.getLogger("traincheck")

ErrorHandler = Callable[[str, BaseException], None]


@dataclass(slots=True)
class _Window:
    """What one process's current step produced: evicted when the step ends."""

    step: int | None
    violated: set[str] = field(default_factory=set)  # invariant ids violated in this step


@dataclass(slots=True)
class _Route:
    """Which items a relation's checker gets: the plan of its invariants says what they are
    about. A call the plan does not name would not even be traced online, so skipping it
    changes no verdict; it only saves the checker the work (the hot path of online checking).
    """

    everything: bool  # some invariant needs everything (an empty plan part)
    apis: set[str]
    variables: bool  # some invariant needs variable states (VarChange items)


def _route(rel: Relation, invariants: Sequence[Invariant]) -> _Route:
    r = _Route(everything=False, apis=set(), variables=False)
    for inv in invariants:
        part = rel.plan(inv)
        if not (part.apis or part.variables or part.attributes):
            return _Route(everything=True, apis=set(), variables=True)
        r.apis |= part.apis
        r.variables = r.variables or bool(part.variables or part.attributes)
    return r


def _call_apis(call: CallRecord) -> set[str]:
    """The APIs of a top-level call and every call nested in it."""
    out = {call.api}
    stack = list(call.children)
    while stack:
        c = stack.pop()
        out.add(c.api)
        stack.extend(c.children)
    return out


@dataclass(slots=True)
class CheckerFailure:
    relation: str
    error: str


class CheckEngine:
    """Check a stream of events against ``invariants``.

    ``relations`` maps relation names to templates; invariants of other relations are kept as
    ``not-checked``. A checker that raises is switched off (its invariants become ``error``)
    and ``on_error`` is told once; the engine itself never raises on bad checker code.
    """

    def __init__(self, invariants: Sequence[Invariant], relations: Mapping[str, Relation], *,
                 nested: bool = False, on_error: ErrorHandler | None = None,
                 source_names: Mapping[int, str] | None = None,
                 on_repeat: Callable[[Violation], None] | None = None) -> None:
        self.invariants = {inv.id: inv for inv in invariants}
        self.relations = relations
        self.outcomes: dict[str, InvariantOutcome] = {i: outcome_for(v)
                                                      for i, v in self.invariants.items()}
        self.assembler = Assembler(nested=nested)
        self.on_error = on_error
        self.on_repeat = on_repeat  # sees every repeated violation (e.g. to log it)
        self.source_names = dict(source_names or {})
        self.checkers: dict[str, RelationChecker] = {}
        self.failures: dict[str, CheckerFailure] = {}
        self.events = 0
        self.seen_apis: set[str] = set()
        self.seen_vars: set[str] = set()
        self._windows: dict[int, _Window] = {}
        self._routes: dict[str, _Route] = {}
        self._wants_api: dict[tuple[str, str], bool] = {}  # (relation, api) -> routed?
        self._reported: set[tuple[str, int | None, int]] = set()  # (invariant, rank, source)
        self._finished = False
        self._build_checkers()

    # -- setup -------------------------------------------------------------------------------
    def _build_checkers(self) -> None:
        by_rel: dict[str, list[Invariant]] = {}
        for inv in self.invariants.values():
            by_rel.setdefault(inv.relation, []).append(inv)
        for name, invs in by_rel.items():
            rel = self.relations.get(name)
            if rel is None:
                for inv in invs:
                    o = self.outcomes[inv.id]
                    o.status = "not-checked"
                    o.why_not = (f"relation {name!r} is not available in this traincheck "
                                 "(is the plugin that provides it installed and selected?)")
                continue
            try:
                self.checkers[name] = rel.checker(invs)
                self._routes[name] = _route(rel, invs)
            except Exception as exc:
                self._fail(name, exc)

    # -- feeding -----------------------------------------------------------------------------
    def feed_record(self, rec: Record) -> list[Violation]:
        """Consume one event; return the violations that are *new* (first per invariant and
        rank). Every violation, new or repeated, is counted in the outcomes."""
        ev = rec.event
        self.events += 1
        if type(ev) is CallStart:
            self.seen_apis.add(ev.api)
        elif type(ev) is VarState:
            self.seen_vars.add(ev.name)
        items = self.assembler.feed(rec)
        if not items:
            return []
        new: list[Violation] = []
        for item in items:
            new += self.feed_item(item)
        return new

    def feed_records(self, records: Iterable[Record]) -> list[Violation]:
        new: list[Violation] = []
        for rec in records:
            new += self.feed_record(rec)
        return new

    def feed_item(self, item: Item) -> list[Violation]:
        """Route one analysis item to every checker; close the step window on ``StepEnd``."""
        new: list[Violation] = []
        kind = type(item)
        tree = _call_apis(item) if isinstance(item, CallRecord) else None
        for name, checker in list(self.checkers.items()):
            if tree is not None:
                if not self._routed(name, tree):
                    continue
            elif kind is VarChange and not self._routes[name].variables:
                continue
            try:
                found = checker.feed(item)
                if found:
                    new += self._accept(found, item)
            except Exception as exc:
                self._fail(name, exc)
        if isinstance(item, StepEnd):
            self._windows.pop(item.source, None)  # evict: the step is over
        return new

    def _routed(self, relation: str, apis: set[str]) -> bool:
        """Does any call of this call tree concern an invariant of ``relation``?"""
        route = self._routes[relation]
        if route.everything:
            return True
        cache = self._wants_api
        for api in apis:
            hit = cache.get((relation, api))
            if hit is None:
                hit = cache[(relation, api)] = matches(api, route.apis)
            if hit:
                return True
        return False

    def finish(self) -> list[Violation]:
        """The stream ended: collect what checkers still had pending. Idempotent."""
        if self._finished:
            return []
        self._finished = True
        new: list[Violation] = []
        for name, checker in list(self.checkers.items()):
            try:
                new += self._accept(checker.finish(), None)
            except Exception as exc:
                self._fail(name, exc)
        self._windows.clear()
        return new

    # -- violations --------------------------------------------------------------------------
    def _accept(self, found: Iterable[Violation], item: Item | None) -> list[Violation]:
        new: list[Violation] = []
        for v in found:
            self._complete(v, item)
            o = self.outcomes.get(v.invariant)
            if o is None:  # a checker reported an id we did not deploy: keep it visible
                o = self.outcomes[v.invariant] = InvariantOutcome(id=v.invariant,
                                                                  relation=v.relation)
            self._count(o, v, item)
            src = item.source if item is not None else -1
            key = (v.invariant, v.rank, src if v.rank is None else 0)
            if key not in self._reported:
                self._reported.add(key)
                o.firsts.append(v)
                new.append(v)
            elif self.on_repeat is not None:
                self.on_repeat(v)
        return new

    def _count(self, o: InvariantOutcome, v: Violation, item: Item | None) -> None:
        o.status = "violated"
        o.occurrences += 1
        if v.step is not None:
            o.per_step[v.step] = o.per_step.get(v.step, 0) + 1
            if o.first_step is None or v.step < o.first_step:
                o.first_step = v.step
        if v.rank is not None and v.rank not in o.ranks:
            o.ranks.append(v.rank)
            o.ranks.sort()
        src = item.source if item is not None else -1
        win = self._windows.get(src)
        if win is None or win.step != v.step:
            win = self._windows[src] = _Window(step=v.step)
        if v.invariant not in win.violated:
            win.violated.add(v.invariant)
            o.steps_violated += 1

    def _complete(self, v: Violation, item: Item | None) -> None:
        """Fill in what the checker left out: step, rank, source, location, hint."""
        inv = self.invariants.get(v.invariant)
        if not v.hint and inv is not None:
            v.hint = inv.hint
        if item is None:
            return
        meta = getattr(item, "meta", None) or {}
        if v.step is None:
            step = item.step if isinstance(item, StepEnd) else meta.get("step")
            v.step = step if isinstance(step, int) else None
        proc = self.assembler.procs.get(item.source)
        if v.rank is None:
            rank = meta.get("rank", proc.rank if proc else None)
            v.rank = rank if isinstance(rank, int) else None
        if v.source is None:
            v.source = self.source_names.get(item.source) or (
                f"{proc.host}:{proc.pid}" if proc else str(item.source))
        if v.loc is None and isinstance(item, CallRecord):
            v.loc = item.loc
        if not v.t:
            v.t = getattr(item, "t", 0) or getattr(item, "t1", 0)

    def _fail(self, relation: str, exc: BaseException) -> None:
        self.checkers.pop(relation, None)
        self.failures[relation] = CheckerFailure(relation, f"{type(exc).__name__}: {exc}")
        for o in self.outcomes.values():
            if o.relation == relation and o.status != "violated":
                o.status = "error"
                o.why_not = (f"the {relation} checker failed ({type(exc).__name__}: {exc}) "
                             "and was switched off")
        if self.on_error is not None:
            self.on_error(relation, exc)
        else:
            logger.warning("checker for relation %s failed and is off: %s: %s", relation,
                           type(exc).__name__, exc)

    # -- result ------------------------------------------------------------------------------
    def result(self) -> CheckResult:
        """Outcomes so far (call :meth:`finish` first for the final word)."""
        stats: dict[str, TriggerStats] = {}
        for name, checker in self.checkers.items():
            try:
                stats.update(checker.stats())
            except Exception as exc:
                logger.warning("checker for relation %s failed to report stats: %s", name, exc)
        for inv_id, o in self.outcomes.items():
            st = stats.get(inv_id)
            if st is not None:
                o.checked = st.checked
            if o.status in ("violated", "error", "not-checked"):
                continue
            if o.checked > 0:
                o.status, o.why_not = "held", ""
            else:
                o.status = "not-triggered"
                o.why_not = (st.why_not if st is not None and st.why_not else
                             self._why_not(self.invariants.get(inv_id)))
        frameworks: dict[str, list[str]] = {}
        for p in self.assembler.procs.values():
            for fw, ver in p.frameworks.items():
                if ver not in frameworks.setdefault(fw, []):
                    frameworks[fw].append(ver)
        return CheckResult(events=self.events, processes=len(self.assembler.procs),
                           frameworks=frameworks, outcomes=list(self.outcomes.values()))

    def _why_not(self, inv: Invariant | None) -> str:
        rel = self.relations.get(inv.relation) if inv is not None else None
        if inv is None or rel is None:
            return "never triggered"
        try:
            part = rel.plan(inv)
        except Exception:
            return "precondition never met"
        # Any API the invariant is about that never ran explains it (e.g. "every eval() is
        # followed by ..." with no eval() at all), even when its other APIs did run.
        missing = sorted(a for a in part.apis if not any(matches(s, [a]) for s in self.seen_apis))
        if missing:
            return NOT_CALLED + ", ".join(missing)
        if part.variables and not any(matches(v, part.variables) for v in self.seen_vars):
            return NOT_OBSERVED + ", ".join(sorted(part.variables))
        return "precondition never met"

