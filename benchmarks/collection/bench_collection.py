"""Collection overhead of ``traincheck run --plugin torch|jax`` (full tracing, no sampling).

For each workload (CNN, transformer LM, MLP with BatchNorm; in PyTorch from ``workloads.py``
and in JAX/Flax/Optax with the same layer sizes, batches and optimizers from
``workloads_jax.py``) this runs the same training script plainly and under ``traincheck run
--plugin <framework>``, alternating (the order flips every repeat, so drift in the machine's
load hits both sides alike), ``--repeats`` times each, in this one invocation. With JAX, the
tiny jitted MLP steps of ``tiny_jax.py`` (1-2 ms) are measured too, as a separately reported
tiny-step stress case with its own ratios and verdict. Reported per workload:

* overhead: median step time traced / median step time plain, each median over all timed steps
  of all repeats; a PyTorch step is zero_grad + forward + loss + backward + clip_grad_norm_ +
  step, a JAX step one call of the jitted train step (forward, loss, value_and_grad, clipping,
  optimizer update) until its outputs are ready.
  Wall-clock time is the headline; CPU time of the process (all its threads, including the
  trace writer) is reported too because it is less sensitive to other load on a shared machine;
* trace bytes and events per step: the traced run's trace size (and event count) divided by
  the number of training steps it ran (warm-up included).

Each framework (and the JAX stress case) gets its own section and verdict against the same
targets: median over its workloads <= 1.5x, worst <= 3x.

Usage: python benchmarks/collection/bench_collection.py [--framework torch|jax|all]
       [--steps 20] [--warmup 3] [--repeats 3] [--threads 1] [--only cnn] [--json]
       [--out benchmarks/results]
With ``--out`` the results go to ``collection-<date>.json`` and ``.md`` in that folder (the
sections of frameworks not measured in this invocation are kept from the file of that day).
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

MODELS = ("cnn", "lm", "mlp")
TINY = ("flax_mlp", "optax_mlp", "eager_optax")
#: group -> (framework plugin, workload script, workloads); each group gets its own verdict
GROUPS = {"torch": ("torch", HERE / "workloads.py", MODELS),
          "jax": ("jax", HERE / "workloads_jax.py", MODELS),
          "jax-tiny": ("jax", HERE / "tiny_jax.py", TINY)}
FRAMEWORKS = {"torch": ("torch",), "jax": ("jax", "jax-tiny"), "all": tuple(GROUPS)}
TITLES = {"torch": "PyTorch", "jax": "JAX (Flax + Optax), the same three models",
          "jax-tiny": "JAX tiny-step stress case (jitted MLP steps of 1-2 ms)"}
TARGET_MEDIAN, TARGET_WORST = 1.5, 3.0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}


def _workload_args(group: str, name: str, args: argparse.Namespace) -> list[str]:
    return [str(GROUPS[group][1]), name, str(args.steps), str(args.warmup), str(args.threads)]


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def run_plain(group: str, name: str, args: argparse.Namespace) -> dict:
    out = subprocess.run([sys.executable, *_workload_args(group, name, args)],
                         capture_output=True, text=True, env=_env())
    if out.returncode != 0:
        raise SystemExit(f"plain {name} failed:\n{out.stderr}")
    return _last_json(out.stdout)


def run_traced(group: str, name: str, args: argparse.Namespace, outdir: Path
               ) -> tuple[dict, int, int]:
    """The workload's timings under ``traincheck run``, the trace bytes and the event count."""
    out = subprocess.run([sys.executable, "-m", "traincheck_core", "run", "-q", "-o",
                          str(outdir), "--plugin", GROUPS[group][0],
                          *_workload_args(group, name, args)],
                         capture_output=True, text=True, env=_env())
    if out.returncode != 0:
        raise SystemExit(f"traced {name} failed:\n{out.stderr}")
    size = sum(f.stat().st_size for f in outdir.iterdir() if f.suffix == ".tctrace")
    return _last_json(out.stdout), size, _count_events(outdir)


def _count_events(outdir: Path) -> int:
    from traincheck_core import iter_run

    return sum(1 for _ in iter_run(outdir))


def bench(group: str, name: str, args: argparse.Namespace) -> dict:
    wall: dict[str, list[float]] = {"plain": [], "traced": []}
    cpu: dict[str, list[float]] = {"plain": [], "traced": []}
    thread: dict[str, list[float]] = {"plain": [], "traced": []}
    sizes, events = [], []
    res: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for side in ("plain", "traced") if r % 2 == 0 else ("traced", "plain"):
                if side == "plain":
                    res = run_plain(group, name, args)
                else:
                    res, size, n = run_traced(group, name, args, Path(tmp) / f"run{r}")
                    sizes.append(size)
                    events.append(n)
                wall[side] += res["times"]
                cpu[side] += res["cpu"]
                thread[side] += res.get("thread", [])
            print(f"  {group} {name} repeat {r + 1}/{args.repeats} done", file=sys.stderr)
    steps = args.steps + args.warmup
    med = {k: statistics.median(v) for k, v in wall.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    row = {"workload": name, "params": res.get("params"),
           "plain_ms": med["plain"] * 1e3, "traced_ms": med["traced"] * 1e3,
           "overhead": med["traced"] / med["plain"],
           "plain_cpu_ms": cmed["plain"] * 1e3, "traced_cpu_ms": cmed["traced"] * 1e3,
           "cpu_overhead": cmed["traced"] / cmed["plain"],
           "trace_bytes_per_step": statistics.median(sizes) / steps,
           "events_per_step": statistics.median(events) / steps,
           "timed_steps_per_side": len(wall["plain"])}
    if thread["plain"] and thread["traced"]:  # the training thread alone (JAX workloads)
        row["plain_thread_ms"] = statistics.median(thread["plain"]) * 1e3
        row["traced_thread_ms"] = statistics.median(thread["traced"]) * 1e3
    return row


def verdict(rows: list[dict]) -> dict:
    ratios = [r["overhead"] for r in rows]
    cpu = [r["cpu_overhead"] for r in rows]
    return {"rows": rows,
            "median_overhead": statistics.median(ratios), "worst_overhead": max(ratios),
            "median_cpu_overhead": statistics.median(cpu), "worst_cpu_overhead": max(cpu),
            "meets_targets": statistics.median(ratios) <= TARGET_MEDIAN
            and max(ratios) <= TARGET_WORST}


def summarize(groups: dict[str, dict], args: argparse.Namespace, previous: dict | None
              ) -> dict:
    """The result file: a section per group; the PyTorch verdict stays at the top level (the
    suite's report cites it from there)."""
    sections = dict((previous or {}).get("frameworks", {}))
    if previous and "frameworks" not in previous and "rows" in previous:
        sections["torch"] = {k: previous[k] for k in verdict(previous["rows"])}
    for group, rows in groups.items():
        sections[group] = {**verdict(rows), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                  time.gmtime())}
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": describe(REPO), "frameworks_versions": _versions(),
           "load_average": list(os.getloadavg()),
           "settings": {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
                        "threads": args.threads, "mode": "full collection, no sampling"},
           "targets": {"median": TARGET_MEDIAN, "worst": TARGET_WORST},
           "frameworks": {g: sections[g] for g in GROUPS if g in sections}}
    if "torch" in sections:
        out.update({k: v for k, v in sections["torch"].items() if k != "date"})
    return out


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    got = {}
    for dist in ("torch", "jax", "jaxlib", "flax", "optax"):
        try:
            got[dist] = md.version(dist)
        except md.PackageNotFoundError:
            got[dist] = "not installed"
    return got


def table(section: dict) -> str:
    lines = ["| workload | params | plain ms | traced ms | overhead | plain CPU ms | "
             "traced CPU ms | CPU overhead | thread CPU ms plain -> traced | "
             "trace bytes/step | events/step |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in section["rows"]:
        params = f"{r['params']:,}" if r.get("params") else "-"
        thr = (f"{r['plain_thread_ms']:.2f} -> {r['traced_thread_ms']:.2f}"
               if "plain_thread_ms" in r else "-")
        lines.append(f"| {r['workload']} | {params} | {r['plain_ms']:.1f} | "
                     f"{r['traced_ms']:.1f} | {r['overhead']:.2f}x | {r['plain_cpu_ms']:.1f} | "
                     f"{r['traced_cpu_ms']:.1f} | {r['cpu_overhead']:.2f}x | {thr} | "
                     f"{r['trace_bytes_per_step']:,.0f} | {r['events_per_step']:.0f} |")
    lines.append("")
    lines.append(f"Median overhead {section['median_overhead']:.2f}x, worst "
                 f"{section['worst_overhead']:.2f}x (targets <= {TARGET_MEDIAN}x, <= "
                 f"{TARGET_WORST}x: {'met' if section['meets_targets'] else 'NOT met'}); "
                 f"CPU time: median {section['median_cpu_overhead']:.2f}x, worst "
                 f"{section['worst_cpu_overhead']:.2f}x.")
    return "\n".join(lines)


def tables(summary: dict) -> str:
    parts = []
    for group, section in summary["frameworks"].items():
        when = f" ({section['date']})" if section.get("date") else ""
        parts += [f"## {TITLES[group]}{when}", "", table(section), ""]
    return "\n".join(parts)


def markdown(summary: dict) -> str:
    st, m = summary["settings"], summary["machine"]
    machine = ", ".join(f"{k} {v}" for k, v in m.items())
    versions = ", ".join(f"{k} {v}" for k, v in summary.get("frameworks_versions", {}).items())
    load = ", ".join(f"{x:.1f}" for x in summary["load_average"])
    return "\n".join([
        f"# Collection overhead ({summary['date']})", "",
        "`python benchmarks/collection/bench_collection.py` — each workload run plainly and "
        "under `traincheck run --plugin torch|jax` (full collection, no sampling), "
        f"alternating, {st['repeats']} repeats x {st['steps']} timed steps (after "
        f"{st['warmup']} warm-up steps), training's cores = {st['threads']} (torch intra-op "
        "threads; JAX: the process's CPU affinity, as XLA ignores its thread flags; 0: all), "
        "in one invocation. The JAX models are the PyTorch ones "
        "(same layer sizes, batches, optimizers) in Flax + Optax with one jitted train step; "
        "a JAX step ends when its outputs are ready. The tiny-step rows are a stress case "
        "(jitted steps of 1-2 ms, where every probe's Python shows), with their own verdict.",
        "", tables(summary),
        f"Machine: {machine}; {versions}. Load average at the end: {load} (the machine is "
        "shared).", "",
        "Reading the numbers: *overhead* compares median wall-clock step times; *CPU "
        "overhead* compares the median CPU time of the training process per step (all its "
        "threads, including traincheck's trace writer); *thread CPU* is the training "
        "thread's alone (JAX: the thread that dispatches the step and runs the probes, not "
        "XLA's). When the machine is loaded by other work, wall-clock medians of the two "
        "sides can differ by more than the tracing costs (ratios below 1x are such noise); "
        "CPU time is the steadier measure of what tracing adds. Full collection: PyTorch — "
        "every module forward (with arguments), optimizer step, zero_grad, backward and clip "
        "call; JAX — every jitted call (with argument summaries and the Optax/Flax/PRNG calls "
        "recorded when it was traced); both — a state event with an XXH3 fingerprint of "
        "every element of every parameter, gradient, buffer/BatchNorm statistic and "
        "optimizer-state array each time one changes across an instrumented call.", ""])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", choices=tuple(FRAMEWORKS), default="all",
                    help="torch, jax (the three models and the tiny-step stress case) or all")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="cores training computes on: "
                    "torch intra-op threads, JAX's CPU affinity (0: all)")
    ap.add_argument("--only", choices=MODELS + TINY, action="append")
    ap.add_argument("--json", action="store_true", help="print the JSON summary")
    ap.add_argument("--out", type=Path, help="write collection-<date>.{json,md} here")
    args = ap.parse_args()
    groups: dict[str, list[dict]] = {}
    for group in FRAMEWORKS[args.framework]:
        names = [w for w in GROUPS[group][2] if not args.only or w in args.only]
        if names:
            groups[group] = [bench(group, w, args) for w in names]
    stem = None
    previous = None
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"collection-{time.strftime('%Y-%m-%d', time.gmtime())}"
        if stem.with_suffix(".json").exists():
            previous = json.loads(stem.with_suffix(".json").read_text())
    summary = summarize(groups, args, previous)
    if stem is not None:
        stem.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
        stem.with_suffix(".md").write_text(markdown(summary))
    print(json.dumps(summary, indent=2) if args.json else tables(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
