"""APISequence: ordering between top-level API calls of one process.

* ``precedes`` — every call of B is preceded by a call of A **in the same window**. A window is
  a stretch of one process with the same ``step``, ``epoch`` and ``stage`` meta variables; a
  call of A belongs to the window it started in and to the one in force when it ended (the
  adapter may switch ``stage`` while ``eval()`` runs). With the stage meta or the module's
  ``training`` attribute as precondition this yields "``eval()`` precedes evaluation forwards".
* ``follows`` — every call of A is followed by a call of B before the next call of A (the last
  call of A in a trace is not judged: the run may simply have ended).

Only top-level calls are ordered (nested calls are part of their caller), which keeps the
hypothesis space to the APIs a training loop calls directly. State per process: the APIs seen
in the current and previous window, and for ``follows`` the APIs seen since each API's last
call — O(distinct APIs) per call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..analysis.assembler import CallRecord, Item
from ..invariants import Invariant
from ..preconditions import Row, call_fields, make_row
from .base import PlanPart
from .common import Collector, Obs, TemplateRelation, call_label, meta_int, short_api

__all__ = ["APISequence"]

_WINDOW_KEYS = ("step", "epoch", "stage")


def _window(call: CallRecord) -> tuple:
    return tuple(call.meta.get(k) for k in _WINDOW_KEYS)


class _Proc:
    __slots__ = ("window", "seen", "ending", "since", "last")

    def __init__(self) -> None:
        self.window: tuple | None = None
        self.seen: set[str] = set()  # APIs started (or ended) in the current window
        self.ending: set[str] = set()  # APIs of the previous window still ending into this one
        self.since: dict[str, set[str]] = {}  # API -> APIs called since its last call
        self.last: dict[str, tuple[CallRecord, Row]] = {}


class _SeqCollector(Collector):
    def __init__(self, wanted: set[tuple] | None, detail: bool) -> None:
        self.wanted = wanted
        self.detail = detail
        self.procs: dict[int, _Proc] = {}

    def _wants(self, fam: tuple) -> bool:
        return self.wanted is None or fam in self.wanted

    def feed(self, item: Item) -> Iterable[Obs]:
        if not isinstance(item, CallRecord):
            return ()
        p = self.procs.setdefault(item.source, _Proc())
        out: list[Obs] = []
        win = _window(item)
        if win != p.window:
            # calls of the previous window that ended after it closed count in this one
            p.seen, p.window = set(p.ending), win
        p.ending = set()
        api = item.api
        row = make_row(call_fields(item))
        step, rank = meta_int(item.meta, "step"), meta_int(item.meta, "rank")
        fam = ("precedes", api)
        if self._wants(fam):
            before = frozenset(p.seen - {api})
            out.append(Obs(family=fam, rows=(row,), labels=before, group=(item.source, item.id),
                           source=item.source, step=step, rank=rank, call=item,
                           observed=sorted(before)))
        fam = ("follows", api)
        prev = p.last.get(api)
        if prev is not None and self._wants(fam):
            pcall, prow = prev
            after = frozenset(p.since.get(api, set()) - {api})
            out.append(Obs(family=fam, rows=(prow,), labels=after, group=(item.source, pcall.id),
                           source=item.source, step=meta_int(pcall.meta, "step"), rank=rank,
                           call=pcall, observed=sorted(after)))
        for other, s in p.since.items():
            if other != api:
                s.add(api)
        p.since[api] = set()
        p.last[api] = (item, row)
        p.seen.add(api)
        p.ending.add(api)  # if the next call is in a new window, this one ended into it
        return out


class APISequence(TemplateRelation):
    name = "APISequence"
    description = ("ordering between API calls of one process: B is always preceded by A in "
                   "the same step/stage window; A is always followed by B before the next A")

    def collector(self, wanted: set[tuple] | None = None, detail: bool = False) -> Collector:
        return _SeqCollector(wanted, detail)

    def params(self, family: tuple, label: Any) -> dict[str, Any]:
        kind, api = family
        if kind == "precedes":
            return {"kind": "precedes", "first": label, "then": api}
        return {"kind": "follows", "first": api, "then": label}

    def key(self, params: dict[str, Any]) -> tuple[tuple, Any]:
        if params["kind"] == "precedes":
            return ("precedes", params["then"]), params["first"]
        return ("follows", params["first"]), params["then"]

    def plan(self, inv: Invariant) -> PlanPart:
        return PlanPart(apis={inv.params["first"], inv.params["then"]})

    def text(self, params: dict[str, Any], subjects: Sequence[str], cond: str) -> str:
        a, b = short_api(params["first"]), short_api(params["then"])
        c = f" {cond}" if cond else ""
        if params["kind"] == "precedes":
            return f"{a}() precedes every {b}() call in the same step/stage{c}"
        return f"every {a}() call is followed by {b}() before the next {a}(){c}"

    def hint(self, params: dict[str, Any]) -> str:
        a, b = short_api(params["first"]), short_api(params["then"])
        if params["kind"] == "precedes":
            return (f"{a}() was not called before {b}(): a missing or misplaced call (e.g. "
                    "evaluation without model.eval(), a step without zero_grad())")
        return f"{b}() was skipped or moved after {a}(): a missing call or a reordered loop"

    def message(self, inv: Invariant, negs: list[Obs], total: int) -> tuple[str, Any, Any]:
        p = inv.params
        o = negs[0]
        a, b = short_api(p["first"]), short_api(p["then"])
        who = f"`{call_label(o.call)}`" if o.call is not None else f"`{b}()`"
        where = f" at step {o.step}" if o.step is not None else ""
        if o.rank is not None:
            where += f", rank {o.rank}"
        if p["kind"] == "precedes":
            return (f"{who}{where} ran without a preceding {a}() in the same step/stage",
                    f"{a}() before {b}()", o.observed)
        return (f"{who}{where} was not followed by {b}() before the next {a}()",
                f"{b}() after {a}()", o.observed)
