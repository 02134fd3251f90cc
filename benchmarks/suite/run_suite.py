"""Score traincheck on the silent-bug corpus and the healthy programs; write a Markdown and a
JSON results table under benchmarks/results/.

    python benchmarks/suite/run_suite.py                 # everything (2 programs at a time)
    python benchmarks/suite/run_suite.py --bugs missing_zero_grad ddp_no_sampler --no-healthy
    python benchmarks/suite/run_suite.py --steps 5 --plain-only   # just validate the programs

Per bug pair: reference trace of healthy.py -> traincheck infer -> buggy.py run with online
checking -> traincheck check of that run (offline) -> healthy.py rerun with another seed
(false alarms). Per healthy program: infer from it alone and check an identical and an
other-seed rerun; infer from k programs (k = 1, 3, 5) and check the others (transfer).
Stages that are unavailable (a subcommand not yet built) or fail are recorded, never fatal.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import BENCH_ROOT, CorpusError, discover_bugs, discover_healthy  # noqa: E402
from machine import describe  # noqa: E402
from pipeline import (  # noqa: E402
    BugResult,
    Ctx,
    HealthyRun,
    TransferResult,
    check_target,
    infer_from,
    score_bug,
    summarize_transfer,
    trace_healthy,
)
from report import write_reports  # noqa: E402

REPO = BENCH_ROOT.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bugs", nargs="*", metavar="NAME", help="only these bug pairs")
    p.add_argument("--healthy", nargs="*", metavar="NAME", help="only these healthy programs")
    p.add_argument("--no-bugs", action="store_true", help="skip the bug pairs")
    p.add_argument("--no-healthy", action="store_true", help="skip the healthy programs")
    p.add_argument("--plain-only", action="store_true",
                   help="only run every program with plain python (validity check)")
    p.add_argument("--overhead", action="store_true",
                   help="also run every program without traincheck, for wall-clock overhead "
                        "ratios (startup-dominated; the collection/checking benchmarks measure "
                        "overhead properly)")
    p.add_argument("--ks", default="1,3,5", help="reference-set sizes for transfer (1,3,5)")
    p.add_argument("--subsets", type=int, default=3, help="reference sets per k (3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="override every program's --steps")
    p.add_argument("-j", "--jobs", type=int, default=2, choices=(1, 2),
                   help="programs run at a time (at most 2)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per program run")
    p.add_argument("--plugin", default="torch")
    p.add_argument("--work", type=Path, help="scratch directory (default: a new temp dir)")
    p.add_argument("--out", type=Path, default=BENCH_ROOT / "results",
                   help="where the results table goes (benchmarks/results)")
    p.add_argument("--tag", default="", help="suffix for the result file names")
    return p.parse_args(argv)


def available_commands() -> set[str]:
    """traincheck subcommands this installation has (infer/check may not exist yet)."""
    try:
        out = subprocess.run(["traincheck", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    names = {"run", "infer", "check", "report", "inspect"}
    return {n for n in names if f"\n    {n} " in out.stdout or f"\n    {n}\n" in out.stdout}


def loadable_plugins() -> set[str]:
    """Plugins `traincheck plugins` says would load (e.g. no jax without JAX installed)."""
    try:
        out = subprocess.run(["traincheck", "plugins"], capture_output=True, text=True,
                             timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line.split()[0] for line in out.splitlines()
            if line.strip().endswith("loads") and line.split()}


def rotations(names: list[str], k: int, subsets: int) -> list[list[str]]:
    """Deterministic reference sets: k consecutive programs starting at evenly spaced offsets."""
    n = len(names)
    if k >= n:
        return []
    stride = max(1, n // subsets)
    offsets = list(range(0, n, stride))[:subsets]
    return [[names[(o + i) % n] for i in range(k)] for o in offsets]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        bugs = [] if args.no_bugs else discover_bugs(only=args.bugs)
        progs = [] if args.no_healthy else discover_healthy(only=args.healthy)
    except CorpusError as e:
        print(f"run_suite: {e}", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="traincheck-suite-"))
    commands = set() if args.plain_only else available_commands()
    skipped: list[str] = []
    if commands:
        usable = loadable_plugins()
        skipped = sorted({c.name for c in [*bugs, *progs] if c.framework not in usable})
        if skipped:
            log(f"skipping {', '.join(skipped)}: their traincheck plugin does not load here")
        bugs = [b for b in bugs if b.framework in usable]
        progs = [p for p in progs if p.framework in usable]
    ctx = Ctx(work=work, seed=args.seed, timeout=args.timeout, plugin=args.plugin,
              commands=commands, steps=args.steps,
              plain_runs=args.overhead or args.plain_only)
    started = time.time()
    log(f"work dir {work}; traincheck commands: {', '.join(sorted(commands)) or 'none'}; "
        f"{len(bugs)} bug pairs, {len(progs)} healthy programs, {args.jobs} at a time")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        bug_futs = [pool.submit(_logged, score_bug, b, ctx, b.name,
                                lambda b=b: BugResult(name=b.name, category=b.category,
                                                      kind=b.kind, trigger_step=b.trigger_step,
                                                      status="error")) for b in bugs]
        run_futs = [pool.submit(_logged, trace_healthy, p, ctx, p.name,
                                lambda p=p: HealthyRun(name=p.name)) for p in progs]
        bug_results = [f.result() for f in bug_futs]
        runs = [f.result() for f in run_futs]
        self_checks, transfer = [], []
        if "infer" in commands and "check" in commands and runs:
            self_checks, transfer = _transfer(pool, ctx, runs, args)
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "duration_s": round(time.time() - started, 1),
        "machine": describe(REPO),
        "commands": sorted(commands),
        "skipped": skipped,
        "settings": {"seed": args.seed, "steps": args.steps, "jobs": args.jobs,
                     "ks": args.ks, "subsets": args.subsets, "plugin": args.plugin,
                     "work": str(work)},
        "bugs": msgspec.to_builtins(bug_results),
        "healthy": msgspec.to_builtins(runs),
        "self_checks": msgspec.to_builtins(self_checks),
        "transfer": msgspec.to_builtins(transfer),
    }
    raw = args.out / "suite-raw.json"  # kept if rendering fails; removed once it worked
    args.out.mkdir(parents=True, exist_ok=True)
    raw.write_text(msgspec.json.encode(results).decode())
    md, js = write_reports(results, args.out, args.tag)
    raw.unlink()
    log(f"wrote {md} and {js} in {results['duration_s']} s")
    return 0


def _transfer(pool, ctx: Ctx, runs, args) -> tuple[list[TransferResult], list[TransferResult]]:
    names = [r.name for r in runs if r.trace(ctx, "ref") is not None]
    ks = [int(k) for k in args.ks.split(",") if k.strip()]
    plans = [(1, [n], True) for n in names]  # self: infer from a program, check its reruns
    plans += [(k, refs, False) for k in ks for refs in rotations(names, k, args.subsets)]
    inferred = list(pool.map(lambda p: (infer_from(ctx, runs, p[0], p[1]), p[2]), plans))
    jobs = []
    for tr, is_self in inferred:
        if tr.infer is None or not tr.infer.ok:
            continue
        if is_self:
            target = next(r for r in runs if r.name == tr.refs[0])
            jobs += [(tr, target, "same_seed"), (tr, target, "other_seed")]
        else:
            jobs += [(tr, r, "other_seed") for r in runs if r.name not in tr.refs]
    checked = pool.map(lambda j: check_target(ctx, j[0], j[1], j[2]), jobs)
    for (tr, _, _), tc in zip(jobs, checked, strict=True):
        tr.checks.append(tc)
    for tr, _ in inferred:
        summarize_transfer(tr)
    return [t for t, s in inferred if s], [t for t, s in inferred if not s]


def _logged(fn, item, ctx: Ctx, name: str, fallback):
    t0 = time.time()
    try:
        out = fn(item, ctx)
    except Exception as e:  # noqa: BLE001 - one broken case must not abort the suite
        log(f"{name}: harness error {type(e).__name__}: {e}")
        out = fallback()
        out.notes.append(f"harness error: {type(e).__name__}: {e}")
        return out
    log(f"{name}: done in {time.time() - t0:.1f} s")
    return out


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
