"""Online checking overhead of ``traincheck run --plugin jax --invariants FILE`` (no sampling).

The JAX counterpart of ``bench_checking.py``, on the JAX workloads of
``benchmarks/collection/bench_jax.py`` (Flax MLP with dropout and evaluation, JAX + Optax MLP
under ``jit``, the same without ``jit``):

1. trace a healthy reference run fully and infer invariants from it (``traincheck infer``);
   the count deployed is reported;
2. run the same training plainly and under online checking with every inferred invariant,
   as ``--repeats`` plain/checked pairs (order alternating) in this one invocation; every step
   is observed and checked;
3. per pair: median step time checked / median step time plain; per workload: the median of
   the pair ratios. Also reported: violations the checked runs printed (every run is healthy,
   so any is a false alarm) and how many events the checked run traced vs. the full trace.

Targets: median over workloads <= 1.05x, worst <= 1.15x.

Usage: python benchmarks/checking/bench_jax.py [--steps 60] [--warmup 10] [--repeats 5]
Writes the ``checking`` part of benchmarks/results/jax-overhead-<date>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TARGET_MEDIAN, TARGET_WORST = 1.05, 1.15


def _load_collection():
    spec = importlib.util.spec_from_file_location(
        "bench_jax_collection", HERE.parent / "collection" / "bench_jax.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


C = _load_collection()


def _events(run_dir: Path) -> int:
    from traincheck_core import iter_run

    return sum(1 for _ in iter_run(run_dir))


def reference(name: str, steps: int, work: Path) -> tuple[Path, int, int]:
    """Trace a healthy run and infer: (invariants file, invariant count, traced events)."""
    run_dir, inv = work / f"{name}-ref", work / f"{name}-inv.jsonl"
    C.run_checked(C.tc("run", "-q", "--plugin", "jax", "-o", str(run_dir),
                       *C.worker_cmd(name, steps, 0)), f"reference run of {name}")
    C.run_checked(C.tc("infer", "-q", str(run_dir), "-o", str(inv)), f"infer for {name}")
    count = sum(1 for line in inv.read_text().splitlines()[1:] if line.strip())
    return inv, count, _events(run_dir)


def checked(name: str, steps: int, warmup: int, inv: Path, out: Path) -> tuple[dict, int]:
    res = C.run_checked(C.tc("run", "--plugin", "jax", "-o", str(out), "--invariants",
                             str(inv), *C.worker_cmd(name, steps, warmup)), f"checked {name}")
    alarms = sum(1 for line in res.stderr.splitlines()
                 if line.startswith("traincheck: VIOLATION"))
    return C.times_of(res), alarms


def bench(name: str, args: argparse.Namespace, work: Path) -> dict:
    inv, count, full_events = reference(name, args.ref_steps, work)
    pairs, alarms, checked_events = C.Pairs(), 0, 0
    for r in range(args.repeats):
        got: dict[str, dict] = {}
        for kind in (("plain", "checked") if r % 2 == 0 else ("checked", "plain")):
            if kind == "plain":
                got[kind] = C.plain(name, args.steps, args.warmup)
                continue
            out = work / f"{name}-checked-{r}"
            got[kind], a = checked(name, args.steps, args.warmup, inv, out)
            alarms += a
            checked_events = _events(out)
        wr, cr = pairs.add(got["plain"], got["checked"])
        print(f"  {name} pair {r + 1}/{args.repeats}: wall ratio {wr:.3f}, cpu ratio {cr:.3f}",
              flush=True)
    return {"workload": name, "invariants": count, **pairs.row("checked"),
            "false_alarms": alarms, "events_full_trace_ref": full_events,
            "events_checked_run": checked_events, "ref_steps": args.ref_steps,
            "checked_steps": args.steps + args.warmup}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=60, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    ap.add_argument("--repeats", type=int, default=5, help="plain/checked pairs per workload")
    ap.add_argument("--ref-steps", type=int, default=20, help="steps of the reference run")
    ap.add_argument("--workloads", default=",".join(C.WORKLOADS))
    ap.add_argument("--out", default=str(C.RESULTS))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tc-bench-check-jax-") as tmp:
        for name in args.workloads.split(","):
            print(f"{name}: reference run, inference, {args.repeats} plain/checked pairs",
                  flush=True)
            rows.append(bench(name, args, Path(tmp)))
    C.update_results("checking", {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
                     "ref_steps": args.ref_steps, "sampling": "none (every step)"},
        "workloads": rows, "summary": C.summarize(rows, TARGET_MEDIAN, TARGET_WORST)},
        Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
