"""Collection overhead of ``traincheck run --plugin torch`` (full tracing, no sampling).

For each workload (CNN, transformer LM, MLP with BatchNorm) this runs the same training script
plainly and under ``traincheck run --plugin torch``, alternating (the order flips every
repeat, so drift in the machine's load hits both sides alike), ``--repeats`` times each, in this
one invocation. Reported per workload:

* overhead: median step time traced / median step time plain, each median over all timed steps
  of all repeats; a step is zero_grad + forward + loss + backward + clip_grad_norm_ + step.
  Wall-clock time is the headline; CPU time of the process (all its threads, including the
  trace writer) is reported too because it is less sensitive to other load on a shared machine;
* trace bytes and events per step: the traced run's trace size (and event count) divided by
  the number of training steps it ran (warm-up included).

Usage: python benchmarks/collection/bench_collection.py [--steps 20] [--warmup 3] [--repeats 3]
       [--threads 1] [--only cnn] [--json] [--out benchmarks/results]
With ``--out`` the results go to ``collection-<date>.json`` and ``.md`` in that folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent / "suite"))

from machine import describe  # noqa: E402

WORKLOADS = ("cnn", "lm", "mlp")
TARGET_MEDIAN, TARGET_WORST = 1.5, 3.0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}


def _workload_args(name: str, args: argparse.Namespace) -> list[str]:
    return [str(HERE / "workloads.py"), name, str(args.steps), str(args.warmup),
            str(args.threads)]


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def run_plain(name: str, args: argparse.Namespace) -> dict:
    out = subprocess.run([sys.executable, *_workload_args(name, args)], capture_output=True,
                         text=True, env=_env())
    if out.returncode != 0:
        raise SystemExit(f"plain {name} failed:\n{out.stderr}")
    return _last_json(out.stdout)


def run_traced(name: str, args: argparse.Namespace, outdir: Path) -> tuple[dict, int, int]:
    """The workload's timings under ``traincheck run``, the trace bytes and the event count."""
    out = subprocess.run([sys.executable, "-m", "traincheck_core", "run", "-q", "-o",
                          str(outdir), "--plugin", "torch", *_workload_args(name, args)],
                         capture_output=True, text=True, env=_env())
    if out.returncode != 0:
        raise SystemExit(f"traced {name} failed:\n{out.stderr}")
    size = sum(f.stat().st_size for f in outdir.iterdir() if f.suffix == ".tctrace")
    return _last_json(out.stdout), size, _count_events(outdir)


def _count_events(outdir: Path) -> int:
    from traincheck_core import iter_run

    return sum(1 for _ in iter_run(outdir))


def bench(name: str, args: argparse.Namespace) -> dict:
    wall: dict[str, list[float]] = {"plain": [], "traced": []}
    cpu: dict[str, list[float]] = {"plain": [], "traced": []}
    sizes, events = [], []
    res: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for side in ("plain", "traced") if r % 2 == 0 else ("traced", "plain"):
                if side == "plain":
                    res = run_plain(name, args)
                else:
                    res, size, n = run_traced(name, args, Path(tmp) / f"run{r}")
                    sizes.append(size)
                    events.append(n)
                wall[side] += res["times"]
                cpu[side] += res["cpu"]
            print(f"  {name} repeat {r + 1}/{args.repeats} done", file=sys.stderr)
    steps = args.steps + args.warmup
    med = {k: statistics.median(v) for k, v in wall.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    return {"workload": name, "params": res["params"],
            "plain_ms": med["plain"] * 1e3, "traced_ms": med["traced"] * 1e3,
            "overhead": med["traced"] / med["plain"],
            "plain_cpu_ms": cmed["plain"] * 1e3, "traced_cpu_ms": cmed["traced"] * 1e3,
            "cpu_overhead": cmed["traced"] / cmed["plain"],
            "trace_bytes_per_step": statistics.median(sizes) / steps,
            "events_per_step": statistics.median(events) / steps,
            "timed_steps_per_side": len(wall["plain"])}


def summarize(rows: list[dict], args: argparse.Namespace) -> dict:
    ratios = [r["overhead"] for r in rows]
    cpu = [r["cpu_overhead"] for r in rows]
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": describe(REPO),
            "load_average": list(os.getloadavg()),
            "settings": {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
                         "threads": args.threads, "mode": "full collection, no sampling"},
            "rows": rows,
            "median_overhead": statistics.median(ratios), "worst_overhead": max(ratios),
            "median_cpu_overhead": statistics.median(cpu), "worst_cpu_overhead": max(cpu),
            "targets": {"median": TARGET_MEDIAN, "worst": TARGET_WORST},
            "meets_targets": statistics.median(ratios) <= TARGET_MEDIAN
            and max(ratios) <= TARGET_WORST}


def table(summary: dict) -> str:
    lines = ["| workload | params | plain ms | traced ms | overhead | plain CPU ms | "
             "traced CPU ms | CPU overhead | trace bytes/step | events/step |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary["rows"]:
        lines.append(f"| {r['workload']} | {r['params']:,} | {r['plain_ms']:.1f} | "
                     f"{r['traced_ms']:.1f} | {r['overhead']:.2f}x | {r['plain_cpu_ms']:.1f} | "
                     f"{r['traced_cpu_ms']:.1f} | {r['cpu_overhead']:.2f}x | "
                     f"{r['trace_bytes_per_step']:,.0f} | {r['events_per_step']:.0f} |")
    lines.append("")
    lines.append(f"Median overhead {summary['median_overhead']:.2f}x, worst "
                 f"{summary['worst_overhead']:.2f}x (targets <= {TARGET_MEDIAN}x, <= "
                 f"{TARGET_WORST}x: {'met' if summary['meets_targets'] else 'NOT met'}); "
                 f"CPU time: median {summary['median_cpu_overhead']:.2f}x, worst "
                 f"{summary['worst_cpu_overhead']:.2f}x.")
    return "\n".join(lines)


def markdown(summary: dict) -> str:
    st, m = summary["settings"], summary["machine"]
    machine = ", ".join(f"{k} {v}" for k, v in m.items())
    load = ", ".join(f"{x:.1f}" for x in summary["load_average"])
    return "\n".join([
        f"# Collection overhead, PyTorch adapter ({summary['date']})", "",
        "`python benchmarks/collection/bench_collection.py` — each workload run plainly and "
        "under `traincheck run --plugin torch` (full collection, no sampling), alternating, "
        f"{st['repeats']} repeats x {st['steps']} timed steps (after {st['warmup']} warm-up "
        f"steps), torch threads = {st['threads']}, in one invocation.", "",
        table(summary), "",
        f"Machine: {machine}. Load average at the end: {load} (the machine is shared).", "",
        "Reading the numbers: *overhead* compares median wall-clock step times; *CPU "
        "overhead* compares the median CPU time of the training process per step (all its "
        "threads, including traincheck's trace writer). When the machine is loaded by other "
        "work, wall-clock medians of the two sides can differ by more than the tracing "
        "costs (ratios below 1x are such noise); CPU time is the steadier measure of what "
        "tracing adds. Full collection: every module forward (with arguments), optimizer "
        "step, zero_grad, backward and clip call, and a state event with an XXH3 fingerprint "
        "of every element of every parameter, gradient, buffer and optimizer-state tensor "
        "each time one changes across an instrumented call.", ""])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--only", choices=WORKLOADS, action="append")
    ap.add_argument("--json", action="store_true", help="print the JSON summary")
    ap.add_argument("--out", type=Path, help="write collection-<date>.{json,md} here")
    args = ap.parse_args()
    rows = [bench(w, args) for w in args.only or WORKLOADS]
    summary = summarize(rows, args)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"collection-{time.strftime('%Y-%m-%d', time.gmtime())}"
        stem.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
        stem.with_suffix(".md").write_text(markdown(summary))
    print(json.dumps(summary, indent=2) if args.json else table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
