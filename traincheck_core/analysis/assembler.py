"""Incremental assembly of calls, variable changes and step boundaries from events."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Union

from ..events import (
    AttrValue,
    CallError,
    CallReturn,
    CallStart,
    Footer,
    Header,
    MetaUpdate,
    MetaValue,
    Summary,
    VarState,
)
from ..trace.reader import Record

__all__ = ["Assembler", "CallRecord", "ProcInfo", "StepEnd", "VarChange", "Item"]


@dataclass(slots=True)
class ProcInfo:
    """One traced process (one trace file)."""

    source: int
    run_id: str
    pid: int
    host: str
    frameworks: dict[str, str]
    meta: dict[str, MetaValue] = field(default_factory=dict)

    @property
    def rank(self) -> MetaValue:
        return self.meta.get("rank")


@dataclass(slots=True)
class VarChange:
    """Variable ``name`` of process ``source`` went from ``before`` (None: first seen) to
    ``after``, across call ``call`` (0: outside any instrumented call)."""

    source: int
    name: str
    vtype: str
    before: dict[str, AttrValue] | None
    after: dict[str, AttrValue]
    call: int
    api: str | None
    meta: dict[str, MetaValue]
    t: int


@dataclass(slots=True)
class CallRecord:
    """A finished call: its arguments, result, the meta variables when it started, the calls
    nested directly inside it, and the variable changes attributed to it."""

    source: int
    id: int
    parent: int
    api: str
    args: dict[str, Summary]
    meta: dict[str, MetaValue]
    t0: int
    t1: int = 0
    ret: Summary | None = None
    exc: str | None = None
    loc: str | None = None
    children: list[CallRecord] = field(default_factory=list)
    changes: list[VarChange] = field(default_factory=list)

    def descendants(self) -> Iterator[CallRecord]:
        for c in self.children:
            yield c
            yield from c.descendants()

    def all_changes(self) -> Iterator[VarChange]:
        """Changes attributed to this call or to any call nested in it."""
        yield from self.changes
        for c in self.children:
            yield from c.all_changes()


@dataclass(slots=True)
class StepEnd:
    """Process ``source`` finished step ``step`` (its meta ``step`` moved past it).
    ``states`` is the last known state of every variable of that process at that moment."""

    source: int
    step: int
    meta: dict[str, MetaValue]
    states: dict[str, dict[str, AttrValue]]
    t: int


Item = Union[CallRecord, VarChange, StepEnd, ProcInfo]


class Assembler:
    """Feed :class:`Record` objects in order; get analysis items back.

    Yields a :class:`ProcInfo` when a trace header is read, a :class:`VarChange` for every
    variable state (also kept on the owning call), a :class:`CallRecord` when a *top-level*
    call ends (nested calls are reachable through ``children``; pass ``nested=True`` to get
    every call as it ends), and a :class:`StepEnd` whenever a process's step advances or its
    trace ends.
    """

    def __init__(self, *, nested: bool = False, keep_states: bool = True) -> None:
        self.nested = nested
        self.keep_states = keep_states
        self.procs: dict[int, ProcInfo] = {}
        self.states: dict[int, dict[str, dict[str, AttrValue]]] = {}
        self._open: dict[int, dict[int, CallRecord]] = {}

    def feed(self, rec: Record) -> list[Item]:
        ev = rec.event
        src = rec.source
        out: list[Item] = []
        if isinstance(ev, CallStart):
            proc = self.procs.get(src) or self._unknown(src)
            self._open.setdefault(src, {})[ev.id] = CallRecord(
                source=src, id=ev.id, parent=ev.parent, api=ev.api, args=ev.args,
                meta=proc.meta, t0=ev.t, loc=ev.loc)
        elif isinstance(ev, (CallReturn, CallError)):
            self._finish(src, ev, out)
        elif isinstance(ev, VarState):
            self._var(src, ev, out)
        elif isinstance(ev, MetaUpdate):
            self._meta(src, ev, out)
        elif isinstance(ev, Header):
            info = ProcInfo(source=src, run_id=ev.run_id, pid=ev.pid, host=ev.host,
                            frameworks=dict(ev.frameworks),
                            meta={"rank": ev.rank, "world_size": ev.world_size,
                                  "local_rank": ev.local_rank})
            self.procs[src] = info
            out.append(info)
        elif isinstance(ev, Footer):
            known = self.procs.get(src)
            step = known.meta.get("step") if known is not None else None
            if isinstance(step, int):
                out.append(self._step_end(src, step, ev.t))
        return out

    def feed_all(self, records: Iterable[Record]) -> Iterator[Item]:
        for rec in records:
            yield from self.feed(rec)

    def _unknown(self, src: int) -> ProcInfo:
        info = ProcInfo(source=src, run_id="?", pid=0, host="?", frameworks={})
        self.procs[src] = info
        return info

    def _finish(self, src: int, ev: CallReturn | CallError, out: list[Item]) -> None:
        call = self._open.get(src, {}).pop(ev.id, None)
        if call is None:
            return
        call.t1 = ev.t
        if isinstance(ev, CallReturn):
            call.ret = ev.ret
        else:
            call.exc = ev.exc_type
        parent = self._open[src].get(call.parent) if call.parent else None
        if parent is not None:
            parent.children.append(call)
        if parent is None or self.nested:
            out.append(call)

    def _var(self, src: int, ev: VarState, out: list[Item]) -> None:
        proc = self.procs.get(src) or self._unknown(src)
        states = self.states.setdefault(src, {})
        before = states.get(ev.name)
        if self.keep_states:
            states[ev.name] = ev.attrs
        call = self._open.get(src, {}).get(ev.call) if ev.call else None
        change = VarChange(source=src, name=ev.name, vtype=ev.vtype, before=before,
                           after=ev.attrs, call=ev.call, api=call.api if call else None,
                           meta=proc.meta, t=ev.t)
        if call is not None:
            call.changes.append(change)
        out.append(change)

    def _meta(self, src: int, ev: MetaUpdate, out: list[Item]) -> None:
        proc = self.procs.get(src) or self._unknown(src)
        old_step = proc.meta.get("step")
        proc.meta = {**proc.meta, **ev.values}  # new dict: records keep the meta they saw
        new_step = proc.meta.get("step")
        if isinstance(old_step, int) and new_step != old_step:
            out.append(self._step_end(src, old_step, ev.t))

    def _step_end(self, src: int, step: int, t: int) -> StepEnd:
        states = dict(self.states.get(src, {}))
        proc = self.procs.get(src) or self._unknown(src)
        return StepEnd(source=src, step=step, meta=proc.meta, states=states, t=t)

    def open_calls(self, src: int) -> dict[int, CallRecord]:
        """Calls of process ``src`` that started and have not ended yet."""
        return self._open.get(src, {})


def meta_value(meta: dict[str, MetaValue], key: str, default: Any = None) -> Any:
    return meta.get(key, default)
