"""Online checking overhead of ``traincheck run --plugin torch|jax --invariants FILE``.

For each model of ``benchmarks/collection/workloads.py`` (CNN, transformer LM, MLP with
BatchNorm), trained by ``loop.py`` (train/eval modes, clipping, scheduler, checkpoints), and
for the same models in JAX (``workloads_jax.py``: Flax + Optax, same sizes, batches and
optimizers) trained by ``loop_jax.py`` (the same loop: train/eval flag, clipping, an Optax
learning-rate schedule, evaluation every 5 steps, a ``flax.serialization`` checkpoint every
10); with JAX also the tiny jitted MLP steps of ``benchmarks/collection/tiny_jax.py``, a
tiny-step stress case reported in its own section with its own verdict:

1. trace a healthy reference run fully and infer invariants from it (``traincheck infer``);
   the count deployed is reported;
2. run the same training plainly and under online checking with every inferred invariant,
   alternating, ``--repeats`` times each, in this one invocation; every step is observed and
   checked (the plan's ``every`` stays 1);
3. per pair: median step time checked / median step time plain; per workload: the median of
   the pair ratios. The same for process CPU time per step (all threads), which other load on
   the machine disturbs less than wall-clock time. Also reported: violations the checked runs
   printed (each run is healthy, so any is a false alarm) and how many events the checked run
   traced vs. the full trace.

Targets: median over workloads <= 1.05x, worst <= 1.15x, per framework (and for the stress
case). Also reported: the training thread's CPU time per step (``time.thread_time``: the thread
that runs the probes; for JAX it dispatches the jitted step, XLA's threads are not counted; for
PyTorch with one intra-op thread it also computes).

Where the checker runs (``--checker``): ``process`` (the default of ``--on-violation warn``: a
separate checker process, so the training thread only encodes events) or ``inline`` (on the
training thread, the default of raise/stop). ``--threads``: the cores training computes on:
torch's intra-op threads, and for JAX the cores the process is confined to (XLA ignores its
thread-count flags, so the JAX loops set their CPU affinity). 1 leaves the second core to the
checker process (like a GPU host, where the training process drives the device from one thread
and other cores idle); 0 is the frameworks' default (every core busy with training, so the
checker process competes with it; XLA's thread pools then make JAX step times bimodal here).
``--checker-cpus``: the checked runs keep their checker process on these cores (``auto``, the
default: the cores ``--threads`` leaves free, as a user would set ``traincheck run
--checker-cpus``; ``none``: any core).

Besides wall-clock time, CPU time: of the training process per step, and in total (training
process plus checker process, whose CPU time over the run is spread over its steps).

Usage: python benchmarks/checking/bench_checking.py [--framework torch|jax|all] [--steps 40]
       [--warmup 5] [--repeats 5] [--checker process|inline] [--threads 1]
       [--malloc default|fixed] [--label NAME]
Writes benchmarks/results/checking-<date>[-<label>].{json,md}: a section per framework (the
sections of frameworks not measured in this invocation are kept from that file).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MODELS = ("cnn", "lm", "mlp")
TINY = ("flax_mlp", "optax_mlp", "eager_optax")
#: group -> (plugin, training script, workloads); each group gets its own verdict. The loops
#: run the collection workloads' models in a richer loop (the tiny JAX steps as they are).
GROUPS = {"torch": ("torch", HERE / "loop.py", MODELS),
          "jax": ("jax", HERE / "loop_jax.py", MODELS),
          "jax-tiny": ("jax", HERE.parent / "collection" / "tiny_jax.py", TINY)}
FRAMEWORKS = {"torch": ("torch",), "jax": ("jax", "jax-tiny"), "all": tuple(GROUPS)}
TITLES = {"torch": "PyTorch", "jax": "JAX (Flax + Optax), the same three models",
          "jax-tiny": "JAX tiny-step stress case (jitted MLP steps of 1-2 ms)"}
TARGET_MEDIAN, TARGET_WORST = 1.05, 1.15
NOISE_FLOOR = 0.95  # a pair ratio below this is noise (checking never speeds training up)

sys.path.insert(0, str(ROOT))
from benchmarks.suite.machine import describe  # noqa: E402

#: ``--malloc fixed``: glibc's allocation thresholds pinned in every run, plain and checked.
#: By default glibc adapts them as memory is freed and hands freed activation memory back to
#: the kernel; a CNN step here then takes 1,000-3,000 minor page faults (several ms), and how
#: many varies from one process to the next, so pair ratios move by +-10%. Pinned, there are
#: none: less noise, but faster plain steps (CPU training setups often get the same from
#: jemalloc or tcmalloc), so the same absolute overhead is a larger ratio.
MALLOC_FIXED = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}
_malloc_env: dict[str, str] = {}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}
    return {**env, **_malloc_env}


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if out.returncode != 0:
        raise SystemExit(f"{what} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out


def _times(out: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(out.stdout.strip().splitlines()[-1])


def tc(*args: str) -> list[str]:
    return [sys.executable, "-m", "traincheck_core", *args]


def reference(group: str, name: str, steps: int, work: Path) -> tuple[Path, int, int]:
    """Trace a healthy run and infer: (invariants file, invariant count, traced events)."""
    run_dir, inv = work / f"{group}-{name}-ref", work / f"{group}-{name}-inv.jsonl"
    plugin, script, _ = GROUPS[group]
    _run(tc("run", "-q", "--plugin", plugin, "-o", str(run_dir), str(script), name,
            str(steps), "0"), f"reference run of {name}")
    _run(tc("infer", str(run_dir), "-o", str(inv)), f"infer for {name}")
    count = sum(1 for line in inv.read_text().splitlines()[1:] if line.strip())
    return inv, count, _events(run_dir)


def _events(run_dir: Path) -> int:
    from traincheck_core import iter_run

    return sum(1 for _ in iter_run(run_dir))


def engine_cpu_ms_per_step(run_dir: Path, inv: Path, steps: int, plugin: str) -> float:
    """CPU time the checker engine needs per training step, fed the reference trace offline:
    the checking part of the online cost, which other load on the machine hardly disturbs."""
    from traincheck_core.check.engine import CheckEngine
    from traincheck_core.check.online import load_all
    from traincheck_core.check.plan import load_relations

    records = list(__import__("traincheck_core").iter_run(run_dir))
    engine = CheckEngine(load_all([str(inv)]), load_relations([plugin]))
    t0 = time.process_time()
    for rec in records:
        engine.feed_record(rec)
    engine.finish()
    return (time.process_time() - t0) / steps * 1e3


def online_check_ms(out: Path, iterations: int) -> float:
    """Time the online checker spent on the training thread per iteration (its own record)."""
    total = 0.0
    for f in out.glob("checkresult-*.json"):
        total += json.loads(f.read_text()).get("check_seconds", 0.0)
    return total / iterations * 1e3


def plain(group: str, name: str, args: argparse.Namespace) -> dict:
    return _times(_run([sys.executable, str(GROUPS[group][1]), name, str(args.steps),
                        str(args.warmup), str(args.threads)], f"plain {name}"))


def checked(group: str, name: str, args: argparse.Namespace, inv: Path, out: Path
            ) -> tuple[dict, int]:
    plugin, script, _ = GROUPS[group]
    cpus = ["--checker-cpus", args.checker_cpus] if args.checker_cpus else []
    res = _run(tc("run", "--plugin", plugin, "--checker", args.checker, *cpus, "-o", str(out),
                  "--invariants", str(inv), str(script), name, str(args.steps),
                  str(args.warmup), str(args.threads)), f"checked {name}")
    alarms = sum(1 for line in res.stderr.splitlines()
                 if line.startswith("traincheck: VIOLATION"))
    return _times(res), alarms


def bench(group: str, name: str, args: argparse.Namespace, work: Path) -> dict:
    inv, count, full_events = reference(group, name, args.ref_steps, work)
    engine_ms = engine_cpu_ms_per_step(work / f"{group}-{name}-ref", inv, args.ref_steps,
                                       GROUPS[group][0])
    online_ms: list[float] = []
    ratios, cpu_ratios, plain_med, checked_med, alarms = [], [], [], [], 0
    total_cpu_ratios: list[float] = []
    plain_cpu: list[float] = []
    thread: dict[str, list[float]] = {"plain": [], "checked": []}
    checked_events = 0
    for r in range(args.repeats):
        order = ("plain", "checked") if r % 2 == 0 else ("checked", "plain")
        got: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for kind in order:
            if kind == "plain":
                t = plain(group, name, args)
            else:
                out = work / f"{group}-{name}-checked-{r}"
                t, a = checked(group, name, args, inv, out)
                alarms += a
                checked_events = _events(out)
                online_ms.append(online_check_ms(out, args.steps + args.warmup))
            got[kind] = statistics.median(t["times"])
            cpu[kind] = statistics.median(t["cpu"])
            if t.get("thread"):
                thread[kind].append(statistics.median(t["thread"]))
        plain_med.append(got["plain"])
        checked_med.append(got["checked"])
        ratios.append(got["checked"] / got["plain"])
        cpu_ratios.append(cpu["checked"] / cpu["plain"])
        checker_cpu = online_ms[-1] / 1e3 if args.checker == "process" else 0.0
        total_cpu_ratios.append((cpu["checked"] + checker_cpu) / cpu["plain"])
        plain_cpu.append(cpu["plain"] * 1e3)
        print(f"  {name} pair {r + 1}/{args.repeats}: plain {got['plain'] * 1e3:.2f} ms, "
              f"checked {got['checked'] * 1e3:.2f} ms, ratio {ratios[-1]:.3f} "
              f"(cpu {cpu_ratios[-1]:.3f})", flush=True)
    row = {"workload": name, "invariants": count, "ratio_median": statistics.median(ratios),
            "ratios": ratios, "cpu_ratio_median": statistics.median(cpu_ratios),
            "cpu_ratios": cpu_ratios,
            "total_cpu_ratio_median": statistics.median(total_cpu_ratios),
            "total_cpu_ratios": total_cpu_ratios,
            "plain_step_ms": statistics.median(plain_med) * 1e3,
            "checked_step_ms": statistics.median(checked_med) * 1e3, "false_alarms": alarms,
            "engine_cpu_ms_per_step": engine_ms,
            "online_check_ms_per_step": statistics.median(online_ms),
            "plain_cpu_ms": statistics.median(plain_cpu),
            "events_full_trace_ref": full_events, "events_checked_run": checked_events,
            "ref_steps": args.ref_steps, "checked_steps": args.steps + args.warmup}
    if thread["plain"] and thread["checked"]:  # the training thread alone
        row["plain_thread_ms"] = statistics.median(thread["plain"]) * 1e3
        row["checked_thread_ms"] = statistics.median(thread["checked"]) * 1e3
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--framework", choices=tuple(FRAMEWORKS), default="all",
                    help="torch, jax (the three models and the tiny-step stress case) or all")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--repeats", type=int, default=5, help="plain/checked pairs per workload")
    ap.add_argument("--ref-steps", type=int, default=20, help="steps of the reference run")
    ap.add_argument("--workloads", help="comma-separated subset (default: all of the "
                    "framework's: " + ", ".join(MODELS + TINY) + ")")
    ap.add_argument("--checker", choices=("process", "inline"), default="process",
                    help="where online checking runs (process: the default of warn)")
    ap.add_argument("--threads", type=int, default=1,
                    help="cores training computes on: torch intra-op threads, JAX's CPU "
                    "affinity (0: the frameworks' default, every core)")
    ap.add_argument("--checker-cpus", default="auto",
                    help="cores of the checker process (traincheck run --checker-cpus); auto: "
                    "the cores training does not compute on when --threads leaves some, "
                    "none: any core")
    ap.add_argument("--malloc", choices=["default", "fixed"], default="default",
                    help="fixed: pin glibc's allocation thresholds in every run, plain and "
                    "checked (no page faults from memory handed back and taken again: less "
                    "noise, faster plain steps)")
    ap.add_argument("--label", default="", help="suffix of the result files")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--render", metavar="JSON", help="only re-write the Markdown of a result")
    args = ap.parse_args()
    args.checker_cpus = _checker_cpus(args.checker_cpus, args.threads)
    if args.malloc == "fixed":
        _malloc_env.update(MALLOC_FIXED)
    if args.render:
        result = json.loads(Path(args.render).read_text())
        Path(args.render).with_suffix(".md").write_text(markdown(result))
        return
    wanted = args.workloads.split(",") if args.workloads else None
    plan = {g: [w for w in GROUPS[g][2] if wanted is None or w in wanted]
            for g in FRAMEWORKS[args.framework]}
    plan = {g: names for g, names in plan.items() if names}
    groups: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="tc-bench-check-") as tmp:
        for group, names in plan.items():
            for name in names:
                print(f"{group} {name}: reference run, inference, {args.repeats} "
                      "plain/checked pairs", flush=True)
                groups.setdefault(group, []).append(bench(group, name, args, Path(tmp)))
                finish(groups, plan, args)  # after each workload: a slow machine still
                # leaves a result


def _checker_cpus(choice: str, threads: int) -> str | None:
    """``--checker-cpus`` for the checked runs: with ``auto``, the cores the training process
    leaves free (the loops compute on the first THREADS cores), as a user would set it."""
    if choice == "none":
        return None
    if choice != "auto":
        return choice
    cores = sorted(os.sched_getaffinity(0))
    free = cores[threads:] if 0 < threads < len(cores) else []
    return ",".join(map(str, free)) or None


def verdict(rows: list[dict]) -> dict:
    medians = [r["ratio_median"] for r in rows]
    cpu_medians = [r["cpu_ratio_median"] for r in rows]
    summary = {"median": statistics.median(medians), "worst": max(medians),
               "cpu_median": statistics.median(cpu_medians), "cpu_worst": max(cpu_medians),
               "target_median": TARGET_MEDIAN, "target_worst": TARGET_WORST}
    summary["total_cpu_median"] = statistics.median(
        r.get("total_cpu_ratio_median", r["cpu_ratio_median"]) for r in rows)
    summary["meets_targets"] = (summary["median"] <= TARGET_MEDIAN
                                and summary["worst"] <= TARGET_WORST)
    # Checking cannot make training faster: pair ratios well below 1 mean other load on the
    # machine moved the timings more than traincheck did, and the verdict is not conclusive.
    summary["conclusive"] = all(x >= NOISE_FLOOR for w in rows for x in w["ratios"])
    summary["median_ci90"] = list(median_ci([w["ratios"] for w in rows]))
    return summary


def median_ci(samples: list[list[float]], level: float = 0.9, draws: int = 4000
              ) -> tuple[float, float]:
    """Bootstrap interval (seeded, so reproducible) of the median over workloads of each
    workload's median pair ratio: every draw resamples each workload's pairs with replacement.
    With one workload it is that workload's interval. On a noisy machine it says how far the
    pairs leave the medians free to move."""
    rng = random.Random(0)
    meds = sorted(statistics.median(statistics.median(rng.choices(s, k=len(s)))
                                    for s in samples) for _ in range(draws))
    return meds[int(draws * (1 - level) / 2)], meds[int(draws * (1 + level) / 2) - 1]


def finish(groups: dict[str, list[dict]], plan: dict[str, list[str]],
           args: argparse.Namespace) -> None:
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    label = args.label
    stem = Path(args.out) / f"checking-{now[:10]}{'-' + label if label else ''}"
    previous = json.loads(stem.with_suffix(".json").read_text()) \
        if stem.with_suffix(".json").exists() else None
    frameworks = sections(previous) if previous else {}
    for group, rows in groups.items():
        frameworks[group] = {"workloads": rows, "summary": verdict(rows), "date": now,
                             "workloads_planned": plan[group]}
    result = {"benchmark": "checking-overhead", "date": now, "machine": describe(ROOT),
              "settings": {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
                           "ref_steps": args.ref_steps, "sampling": "none (every step)",
                           "checker": args.checker, "torch_threads": args.threads,
                           "checker_cpus": args.checker_cpus, "label": label,
                           "malloc": args.malloc},
              "frameworks": {g: frameworks[g] for g in GROUPS if g in frameworks},
              "load": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    if "torch" in frameworks:  # the suite's report cites the PyTorch verdict from here
        result["workloads"] = frameworks["torch"]["workloads"]
        result["summary"] = frameworks["torch"]["summary"]
    write(result, Path(args.out))


def sections(r: dict) -> dict[str, dict]:
    """The per-framework sections of a result (files before JAX joined: PyTorch only)."""
    if "frameworks" in r:
        return dict(r["frameworks"])
    return {"torch": {"workloads": r["workloads"], "summary": r["summary"],
                      "workloads_planned": r["settings"].get("workloads_planned", [])}}


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    label = result["settings"].get("label", "")
    stem = out / f"checking-{result['date'][:10]}{'-' + label if label else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    st = r["settings"]
    lines = [f"# Online checking overhead ({r['date']})", "",
             "`traincheck run --plugin torch|jax --invariants FILE` vs. the same script "
             "without traincheck, alternating in one invocation; every step traced and checked "
             f"(no sampling); {st['repeats']} pairs per workload, {st['steps']} timed steps "
             f"after {st['warmup']} warm-up steps per run. Invariants inferred from one fully "
             f"traced healthy run of {st['ref_steps']} steps. Checker: "
             f"{st.get('checker', 'inline')}; training's cores (torch intra-op threads; "
             f"JAX: CPU affinity): {st.get('torch_threads') or 'default (all)'}; checker "
             f"process's cores (--checker-cpus): {st.get('checker_cpus') or 'any'}. The JAX "
             "models are the "
             "PyTorch ones (same layer sizes, batches, optimizers) in Flax + Optax, in the "
             "same loop; the tiny-step rows are a stress case (jitted steps of 1-2 ms, where "
             "every probe's Python shows), with their own verdict."
             + (" glibc's allocation thresholds pinned in every run, plain and checked "
                f"(--malloc fixed: {', '.join(f'{k}={v}' for k, v in MALLOC_FIXED.items())})."
                if st.get("malloc") == "fixed" else ""), ""]
    for group, sec in sections(r).items():
        when = f" ({sec['date']})" if sec.get("date") else ""
        lines += [f"## {TITLES.get(group, group)}{when}", "", *section_md(sec), ""]
    lines += [*r.get("notes", []), ""] if r.get("notes") else []
    lines += [f"Load average while it ran (1/5/15 min): {r['load']}.", "", "Machine:", ""]
    lines += [f"- {k}: {v}" for k, v in r["machine"].items()]
    return "\n".join(lines) + "\n"


def section_md(sec: dict) -> list[str]:
    s, rows = sec["summary"], sec["workloads"]
    lines = ["| workload | invariants | plain ms/step | checked ms/step | ratio (median) | "
             "pair ratios | CPU ratio: training process | CPU ratio: total | "
             "training-thread CPU ms plain -> checked | false alarms | "
             "events: full trace / checked run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in rows:
        lo, hi = median_ci([w["ratios"]])
        pairs = ", ".join(f"{x:.3f}" for x in w["ratios"]) + f" (90% CI of the median: " \
            f"{lo:.3f}-{hi:.3f})"
        total = w.get("total_cpu_ratio_median", w["cpu_ratio_median"])
        thr = (f"{w['plain_thread_ms']:.2f} -> {w['checked_thread_ms']:.2f}"
               if "plain_thread_ms" in w else "-")
        lines.append(f"| {w['workload']} | {w['invariants']} | {w['plain_step_ms']:.2f} | "
                     f"{w['checked_step_ms']:.2f} | **{w['ratio_median']:.3f}x** | {pairs} | "
                     f"{w['cpu_ratio_median']:.3f}x | {total:.3f}x | {thr} | "
                     f"{w['false_alarms']} | "
                     f"{w['events_full_trace_ref']} ({w['ref_steps']} steps) / "
                     f"{w['events_checked_run']} ({w['checked_steps']} steps) |")
    if any("engine_cpu_ms_per_step" in w for w in rows):
        lines += ["", "Where the time goes (CPU ms per step): the checker engine fed the "
                  "reference trace offline, the checker's CPU online (the checker process's "
                  "whole CPU time, start-up included, or the training thread's time inside "
                  "the checker), and the plain step's CPU time:", "",
                  "| workload | engine CPU ms/step (offline) | checker ms/step (online) | "
                  "plain step CPU ms | engine / plain |", "|---|---|---|---|---|"]
        for w in rows:
            if "engine_cpu_ms_per_step" in w:
                e, p = w["engine_cpu_ms_per_step"], w["plain_cpu_ms"]
                lines.append(f"| {w['workload']} | {e:.1f} | "
                             f"{w['online_check_ms_per_step']:.1f} | {p:.1f} | "
                             f"{e / p:.2f} |")
    ok = "meets" if s["meets_targets"] else "does NOT meet"
    if not s.get("conclusive", True):
        ok = (f"NOT CONCLUSIVE (some pair ratios are below {NOISE_FLOOR}: the machine's other "
              f"load moved step times more than checking did); on paper it {ok}")
    planned = sec.get("workloads_planned", [])
    done = [w["workload"] for w in rows]
    if len(done) < len(planned):
        lines += ["", f"**Partial result**: only {', '.join(done)} of {', '.join(planned)} "
                  "finished in the time available; the summary covers those only."]
    lo, hi = s.get("median_ci90") or median_ci([w["ratios"] for w in rows])
    margin = (f" The median's interval reaches {hi:.3f}x: the target is not met by a margin "
              "this run shows." if s["meets_targets"] and hi > s["target_median"] else "")
    lines += ["", f"Median over workloads **{s['median']:.3f}x** (target <= "
              f"{s['target_median']}x; bootstrap 90% interval {lo:.3f}-{hi:.3f}x), worst "
              f"**{s['worst']:.3f}x** (target <= "
              f"{s['target_worst']}x): {ok} the targets.{margin} CPU time per step of the "
              "training "
              f"process: median {s['cpu_median']:.3f}x, worst {s['cpu_worst']:.3f}x; "
              f"training plus checker process: median "
              f"{s.get('total_cpu_median', s['cpu_median']):.3f}x."]
    return lines


if __name__ == "__main__":
    main()
