"""Turn traincheck outputs (``check --json`` results, ``violations.jsonl``) into detections."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec


class Firing(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One invariant that was violated: where it first fired and what it said."""

    invariant: str
    relation: str = ""
    step: int | None = None
    rank: int | None = None
    text: str = ""
    message: str = ""
    hint: str = ""
    occurrences: int = 0
    latency_ms: float | None = None  # online: from the showing event to the report


class CheckSummary(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What one check (online or offline) of one run found."""

    available: bool = True  # False: no result to read (command failed or missing)
    invariants: int = 0  # invariants in the file
    triggered: int = 0  # invariants whose precondition held at least once
    firings: list[Firing] = []
    note: str = ""

    @property
    def violated_ids(self) -> set[str]:
        return {f.invariant for f in self.firings}


def from_check_json(stdout: str) -> CheckSummary:
    """Parse ``traincheck check --json`` output (a CheckResult)."""
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError as e:
        return CheckSummary(available=False, note=f"unreadable check JSON: {e}")
    outcomes = data.get("outcomes", []) if isinstance(data, dict) else []
    firings = []
    for o in outcomes:
        if o.get("status") != "violated":
            continue
        first = _earliest(o.get("firsts") or [])
        firings.append(Firing(invariant=o.get("id", "?"), relation=o.get("relation", ""),
                              step=o.get("first_step", first.get("step")),
                              rank=first.get("rank"), text=o.get("text", ""),
                              message=first.get("message", ""),
                              hint=o.get("hint") or first.get("hint", ""),
                              occurrences=o.get("occurrences", 0)))
    triggered = sum(1 for o in outcomes if o.get("status") in ("violated", "held"))
    return CheckSummary(invariants=len(outcomes), triggered=triggered, firings=_sorted(firings))


def from_violations_file(path: Path, invariants: int = 0) -> CheckSummary:
    """Online violations of a run directory (``violations.jsonl``); absent file = none."""
    if not path.exists():
        return CheckSummary(invariants=invariants, note="no violations.jsonl")
    by_id: dict[str, Firing] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            v = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed process
        inv = v.get("invariant", "?")
        f = by_id.get(inv)
        if f is None:
            by_id[inv] = Firing(invariant=inv, relation=v.get("relation", ""), step=v.get("step"),
                                rank=v.get("rank"), message=v.get("message", ""),
                                hint=v.get("hint", ""), occurrences=1,
                                latency_ms=_latency(v))
            continue
        f.occurrences += 1
        if _key(v.get("step")) < _key(f.step):
            f.step, f.rank, f.message = v.get("step"), v.get("rank"), v.get("message", "")
            f.latency_ms = _latency(v)
    return CheckSummary(invariants=invariants, firings=_sorted(list(by_id.values())))


def _latency(v: dict[str, Any]) -> float | None:
    t, reported = v.get("t") or 0, v.get("reported_t") or 0
    return round((reported - t) / 1e6, 3) if t > 0 and reported >= t else None


def count_invariants(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except OSError:
        return 0


class Detection(msgspec.Struct, kw_only=True, omit_defaults=True):
    detected: bool
    step: int | None = None
    delay: int | None = None  # detection step - trigger step
    on_time: bool = False  # detected within one step of the trigger
    by: Firing | None = None
    violated: int = 0
    also_on_healthy: int = 0  # of those, how many also fired on the healthy rerun


def detect(found: CheckSummary, trigger_step: int, noise: set[str]) -> Detection:
    """Score one check of a buggy run. Invariants that also fire on a healthy rerun (``noise``)
    do not count as detecting the bug."""
    real = [f for f in found.firings if f.invariant not in noise]
    if not real:
        return Detection(detected=False, violated=len(found.firings),
                         also_on_healthy=len(found.firings))
    first = real[0]
    delay = None if first.step is None else first.step - trigger_step
    return Detection(detected=True, step=first.step, delay=delay,
                     on_time=delay is not None and -1 <= delay <= 1, by=first,
                     violated=len(found.firings), also_on_healthy=len(found.firings) - len(real))


def _earliest(firsts: list[dict[str, Any]]) -> dict[str, Any]:
    return min(firsts, key=lambda v: _key(v.get("step")), default={})


def _key(step: int | None) -> float:
    return float("inf") if step is None else step


def _sorted(firings: list[Firing]) -> list[Firing]:
    return sorted(firings, key=lambda f: (_key(f.step), -f.occurrences, f.invariant))
