"""The per-program pipelines: reference trace -> infer -> online check of the buggy program ->
offline check -> healthy rerun (false alarms), and the healthy-program transfer study.

Every stage records a :class:`~proc.CmdResult`; a failing stage marks what depends on it as
skipped and never stops the suite.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from corpus import BugCase, HealthyProgram
from proc import CmdResult, run
from score import (
    CheckSummary,
    Detection,
    count_invariants,
    detect,
    from_check_json,
    from_violations_file,
)


@dataclass
class Ctx:
    work: Path
    seed: int = 0
    timeout: float = 300
    plugin: str = "torch"
    commands: set[str] = field(default_factory=set)  # traincheck subcommands available
    steps: int | None = None  # override the programs' default --steps
    plain_runs: bool = True  # also run every program without traincheck (overhead ratios)

    def prog_args(self, seed: int) -> list[str]:
        extra = ["--steps", str(self.steps)] if self.steps else []
        return ["--seed", str(seed), *extra]


def plain(ctx: Ctx, script: str, seed: int, log: Path) -> CmdResult:
    return run([sys.executable, script, *ctx.prog_args(seed)], log, cwd=Path(script).parent,
               timeout=ctx.timeout)


def traced(ctx: Ctx, script: str, seed: int, out: Path, inv: Path | None = None,
           plugin: str | None = None) -> CmdResult:
    cmd = ["traincheck", "run", "--plugin", plugin or ctx.plugin, "-q", "-o", str(out)]
    if inv is not None:
        cmd += ["-i", str(inv)]
    return run([*cmd, script, *ctx.prog_args(seed)], out.with_suffix(".log"),
               cwd=Path(script).parent, timeout=ctx.timeout)


def infer(ctx: Ctx, traces: list[Path], out: Path) -> CmdResult:
    return run(["traincheck", "infer", *map(str, traces), "-o", str(out)],
               out.with_suffix(".log"), timeout=ctx.timeout * 4)


def check(ctx: Ctx, trace: Path, inv: Path) -> tuple[CmdResult, CheckSummary]:
    res = run(["traincheck", "check", str(trace), "-i", str(inv), "--json"],
              trace.with_name(trace.name + ".check.log"), timeout=ctx.timeout, ok_codes=(0, 1),
              keep_stdout=True)
    found = from_check_json(res.stdout) if res.ok else CheckSummary(available=False,
                                                                     note=res.status)
    res.stdout = ""  # the parsed summary is what we keep
    return res, found


class BugResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    category: str
    kind: str
    trigger_step: int
    stages: dict[str, CmdResult] = {}
    invariants: int = 0
    online: Detection | None = None
    offline: Detection | None = None
    false_alarms: list[str] = []  # invariants violated by the healthy rerun (other seed)
    collection_overhead: float | None = None  # traced healthy / plain healthy (wall clock)
    checking_overhead: float | None = None  # online-checked buggy / plain buggy
    infer_seconds: float | None = None
    status: str = "ok"  # ok | partial (some stage failed or unavailable)
    notes: list[str] = []


def score_bug(case: BugCase, ctx: Ctx) -> BugResult:
    w = ctx.work / "bugs" / case.name
    r = BugResult(name=case.name, category=case.category, kind=case.kind,
                  trigger_step=case.trigger_step)
    healthy, buggy = str(Path(case.dir) / "healthy.py"), str(Path(case.dir) / "buggy.py")
    fw = case.framework
    if ctx.plain_runs:
        r.stages["plain_healthy"] = plain(ctx, healthy, ctx.seed, w / "plain_healthy.log")
        r.stages["plain_buggy"] = plain(ctx, buggy, ctx.seed, w / "plain_buggy.log")
    if not ctx.commands:  # --plain-only: validity of the programs only
        return r
    if "run" not in ctx.commands:
        return _partial(r, "traincheck run unavailable")
    ref = w / "ref"
    r.stages["trace_healthy"] = traced(ctx, healthy, ctx.seed, ref, plugin=fw)
    r.collection_overhead = _ratio(r.stages["trace_healthy"], r.stages.get("plain_healthy"))
    if "infer" not in ctx.commands:
        r.stages["trace_buggy"] = traced(ctx, buggy, ctx.seed, w / "buggy_traced", plugin=fw)
        return _partial(r, "traincheck infer unavailable: traced both programs only")
    if not r.stages["trace_healthy"].ok:
        return _partial(r, "reference trace failed")
    inv = w / "invariants.jsonl"
    r.stages["infer"] = infer(ctx, [ref], inv)
    r.infer_seconds = r.stages["infer"].seconds
    if not r.stages["infer"].ok or not inv.exists():
        return _partial(r, "inference failed")
    r.invariants = count_invariants(inv)
    online_dir, rerun_dir = w / "online", w / "rerun"
    r.stages["online_buggy"] = traced(ctx, buggy, ctx.seed, online_dir, inv, fw)
    r.stages["online_rerun"] = traced(ctx, healthy, ctx.seed + 1, rerun_dir, inv, fw)
    r.checking_overhead = _ratio(r.stages["online_buggy"], r.stages.get("plain_buggy"))
    online = from_violations_file(online_dir / "violations.jsonl", r.invariants)
    noise = from_violations_file(rerun_dir / "violations.jsonl").violated_ids
    offline = None
    if "check" in ctx.commands:
        r.stages["check_buggy"], offline = check(ctx, online_dir, inv)
        r.stages["check_rerun"], rerun_off = check(ctx, rerun_dir, inv)
        noise |= rerun_off.violated_ids
    r.false_alarms = sorted(noise)
    if r.stages["online_buggy"].ok or online.firings:
        r.online = detect(online, case.trigger_step, noise)
    if offline is not None and offline.available:
        r.offline = detect(offline, case.trigger_step, noise)
    if not all(s.ok for s in r.stages.values()):
        r.status = "partial"
    return r


def _partial(r: BugResult, note: str) -> BugResult:
    r.status = "partial"
    r.notes.append(note)
    return r


def _ratio(a: CmdResult, b: CmdResult | None) -> float | None:
    if b is None or not (a.ok and b.ok) or b.seconds <= 0:
        return None
    return round(a.seconds / b.seconds, 2)


# --- healthy programs -------------------------------------------------------------------


class HealthyRun(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    stages: dict[str, CmdResult] = {}
    collection_overhead: float | None = None
    notes: list[str] = []

    def trace(self, ctx: Ctx, which: str) -> Path | None:
        st = self.stages.get(which)
        return ctx.work / "healthy" / self.name / which if st is not None and st.ok else None


def trace_healthy(prog: HealthyProgram, ctx: Ctx) -> HealthyRun:
    """Plain run (timing, validity), reference trace (seed), identical rerun (same seed) and
    another-seed rerun, all traced."""
    w = ctx.work / "healthy" / prog.name
    h = HealthyRun(name=prog.name)
    fw = prog.framework
    if ctx.plain_runs:
        h.stages["plain"] = plain(ctx, prog.path, ctx.seed, w / "plain.log")
    if "run" not in ctx.commands:
        return h
    h.stages["ref"] = traced(ctx, prog.path, ctx.seed, w / "ref", plugin=fw)
    h.collection_overhead = _ratio(h.stages["ref"], h.stages.get("plain"))
    if "infer" in ctx.commands:  # reruns only matter once there is something to check
        h.stages["same_seed"] = traced(ctx, prog.path, ctx.seed, w / "same_seed", plugin=fw)
        h.stages["other_seed"] = traced(ctx, prog.path, ctx.seed + 1, w / "other_seed",
                                         plugin=fw)
    return h


class TransferCheck(msgspec.Struct, kw_only=True, omit_defaults=True):
    target: str
    trace: str  # same_seed | other_seed
    invariants: int = 0
    triggered: int = 0
    violated: list[str] = []
    share: float | None = None  # violated / invariants
    status: str = "ok"


class TransferResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    k: int
    refs: list[str]
    invariants: int = 0
    infer: CmdResult | None = None
    checks: list[TransferCheck] = []
    mean_share: float | None = None  # mean over targets of violated/invariants
    union_share: float | None = None  # distinct invariants violated anywhere / invariants


def infer_from(ctx: Ctx, runs: list[HealthyRun], k: int, refs: list[str]) -> TransferResult:
    tr = TransferResult(k=k, refs=refs)
    traces = [t for r in runs if r.name in refs if (t := r.trace(ctx, "ref")) is not None]
    if len(traces) != len(refs):
        tr.infer = CmdResult(cmd=[], status="error", tail="a reference trace is missing")
        return tr
    inv = ctx.work / "transfer" / f"k{k}-{'+'.join(refs)}.jsonl"
    tr.infer = infer(ctx, traces, inv)
    tr.invariants = count_invariants(inv) if tr.infer.ok else 0
    return tr


def check_target(ctx: Ctx, tr: TransferResult, run_: HealthyRun, which: str) -> TransferCheck:
    tc = TransferCheck(target=run_.name, trace=which, invariants=tr.invariants)
    trace = run_.trace(ctx, which)
    inv = ctx.work / "transfer" / f"k{tr.k}-{'+'.join(tr.refs)}.jsonl"
    if trace is None or not inv.exists():
        tc.status = "skipped"
        return tc
    res, found = check(ctx, trace, inv)
    if not found.available:
        tc.status = f"check {res.status}"
        return tc
    tc.triggered = found.triggered
    tc.violated = sorted(found.violated_ids)
    tc.share = round(len(tc.violated) / tr.invariants, 4) if tr.invariants else None
    return tc


def summarize_transfer(tr: TransferResult) -> None:
    shares = [c.share for c in tr.checks if c.share is not None]
    tr.mean_share = round(sum(shares) / len(shares), 4) if shares else None
    if tr.invariants and shares:
        union = set().union(*(c.violated for c in tr.checks if c.share is not None))
        tr.union_share = round(len(union) / tr.invariants, 4)
