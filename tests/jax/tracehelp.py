"""Read a run directory into simple lists for assertions."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from traincheck_core import CallStart, VarState, iter_run, with_meta


class Trace:
    def __init__(self, path: Path) -> None:
        self.calls: list[tuple[CallStart, dict]] = []
        self.vars: list[tuple[VarState, dict]] = []
        for rec, meta in with_meta(iter_run(path)):
            ev = rec.event
            if isinstance(ev, CallStart):
                self.calls.append((ev, dict(meta)))
            elif isinstance(ev, VarState):
                self.vars.append((ev, dict(meta)))
        self.api_of = {c.id: c.api for c, _ in self.calls}

    def calls_of(self, api: str) -> list[tuple[CallStart, dict]]:
        return [(c, m) for c, m in self.calls if c.api == api]

    def changes_by_api(self) -> dict[str, dict[str, int]]:
        """variable name -> {api of the call that changed it: count} (first-seen excluded)."""
        out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for v, _ in self.vars:
            if v.call:
                out[v.name][self.api_of.get(v.call, "?")] += 1
        return out

    def var_names(self) -> set[str]:
        return {v.name for v, _ in self.vars}
