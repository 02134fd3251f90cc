"""Inference benchmark: time and peak memory of `traincheck infer` on traces of 1x, 2x and 4x
the steps of the same run, with the growth ratios and MB/s.

Usage::

    python benchmarks/inference/bench_infer.py [--steps 60] [--blocks 4] [--repeats 3]

The workload is ``benchmarks/inference/cnn.py`` (a small CNN with ``--blocks`` conv + batch
norm blocks, synthetic data, CPU), recorded with ``traincheck run --plugin torch`` at
``steps``, ``2*steps`` and ``4*steps``. Each trace is inferred ``--repeats`` times with every
``--jobs`` setting; the best wall time is reported (the machine is shared: the best run is the
least disturbed one), together with the CPU seconds (user + system of `traincheck infer` and
its workers) and the peak resident memory of the largest process. The plain training run
(without traincheck) is timed in the same invocation, for scale. Results go to
``benchmarks/results/inference-<date>.json`` and ``.md``.

Why the engine is near-linear, uses the cores and stays within bounded memory
---------------------------------------------------------------------------
* **Streaming, per-step windows.** Trace files are read frame by frame and merged by time;
  the assembler turns events into calls, variable changes and step ends, and each relation's
  collector keeps only a window: the current step (APIArg, APISequence), the previous step end
  per process (StepEvolution), the steps still waiting for a rank (Consistency, at most 256),
  the last state of each variable (EventContain). Nothing is kept per event.
* **Blocking keys instead of pair enumeration.** Consistency pairs the states of one step by
  (step, stable variable name) across ranks; APIArg groups calls by (process, step, API) and
  (step, API, k-th call) -- dictionary lookups, never an all-pairs scan over the trace, which
  is what makes upstream TrainCheck quadratic.
* **Distinct examples, not examples.** The accumulators count distinct (precondition row,
  labels) examples; a row holds only generalizable fields (no step numbers, ids or
  fingerprints), so the accumulators grow with the variety of the run (variables x states x
  call contexts), not with its length. Rows of variable states are memoized per state.
* **Folding repeated examples in the collectors.** A training step repeats the last one:
  the same module calls with the same arguments, the same variables in the same kind of
  state. EventContain counts the variables a call left unchanged per (API, call row, counts
  of variables per row before the call) instead of emitting one example per variable row per
  call; StepEvolution and VarConstant count repeated (rows, labels, variable) examples; all
  become weighted examples at the end of the run. Rows of variable states are built once
  per content and shared, so the accumulator finds a repeated example by identity instead
  of hashing a long row again. The invariants are byte-identical to those of the unfolded
  collectors (checked with ``cmp`` on three traces while optimizing).
* **Precondition search** runs per hypothesis on the distinct examples only: its cost does
  not grow with the number of steps.
* **Cores.** Collecting runs one task per (run, relation group) in a process pool; deciding
  runs one task per chunk of hypothesis families. With one run and two cores the relations
  are split into two groups, each reading the trace (decoding is cheap next to the analysis).

Memory bound: O(variables x distinct states + one step of calls + pending steps) per process
and relation, independent of the number of steps; the peak RSS column shows it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.suite.machine import describe  # noqa: E402

#: The issue's reference: the best-known implementation needs 83 s on these machines for the
#: 25 MB trace of a 60-step small CNN run, and grows quadratically.
REFERENCE = {"seconds": 83.0, "trace_mb": 25.0, "steps": 60}

_MEASURE = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": r.returncode, "wall": wall, "cpu": u.ru_utime + u.ru_stime,
                  "maxrss_kb": u.ru_maxrss, "stderr": r.stderr[-4000:]}))
"""


_SNAPSHOT: Path | None = None  # traincheck_core exported from HEAD (see snapshot())


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}
    if _SNAPSHOT is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(_SNAPSHOT), env.get("PYTHONPATH", "")])
    return env


def snapshot(work: Path) -> str:
    """Measure the committed core, not a work tree that others may be editing meanwhile:
    export ``traincheck_core`` at HEAD and put it first on ``PYTHONPATH``."""
    global _SNAPSHOT
    dest = work / "src"
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD", "traincheck_core"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    _SNAPSHOT = dest
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()


def measure(cmd: list[str], cwd: Path) -> dict:
    """Run ``cmd`` in a fresh wrapper process: wall, CPU (with workers) and peak RSS of it."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], cwd=cwd, capture_output=True,
                         text=True, env=_env(), check=True)
    res = json.loads(out.stdout)
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res['rc']}):\n{res['stderr']}")
    return res


def record(work: Path, steps: int, blocks: int) -> dict:
    out = work / f"trace-{steps}"
    cmd = [sys.executable, "-m", "traincheck_core", "run", "-q", "--plugin", "torch", "-o",
           str(out), str(HERE / "cnn.py"), "--steps", str(steps), "--blocks", str(blocks)]
    traced = measure(cmd, work)
    plain = measure([sys.executable, str(HERE / "cnn.py"), "--steps", str(steps), "--blocks",
                     str(blocks)], work)
    files = sorted(out.glob("*.tctrace"))
    size = sum(f.stat().st_size for f in files)
    return {"steps": steps, "dir": str(out), "files": len(files), "trace_mb": size / 2**20,
            "record_wall_s": traced["wall"], "plain_train_wall_s": plain["wall"]}


def infer(trace: dict, jobs: int, repeats: int, work: Path) -> dict:
    runs = []
    for i in range(repeats):
        cmd = [sys.executable, "-m", "traincheck_core", "infer", trace["dir"], "-o",
               str(work / f"inv-{trace['steps']}-{jobs}-{i}.jsonl"), "-j", str(jobs)]
        runs.append(measure(cmd, work))
    best = min(runs, key=lambda r: r["wall"])
    head = best["stderr"].splitlines()
    events = 0
    for line in head:
        words = line.split()
        for w, nxt in zip(words, words[1:], strict=False):
            if nxt.startswith("events") and w.isdigit():
                events = int(w)
    invs = sum(1 for _ in open(work / f"inv-{trace['steps']}-{jobs}-0.jsonl")) - 1
    same = len({(work / f"inv-{trace['steps']}-{jobs}-{i}.jsonl").read_bytes()
                for i in range(repeats)}) == 1
    return {"steps": trace["steps"], "jobs": jobs, "trace_mb": trace["trace_mb"],
            "events": events, "invariants": invs, "wall_s": best["wall"],
            "cpu_s": min(r["cpu"] for r in runs), "peak_rss_mb": max(r["maxrss_kb"] for r in
                                                                  runs) / 1024,
            "mb_per_s": trace["trace_mb"] / best["wall"], "walls": [r["wall"] for r in runs],
            "reproducible": same}


def ratios(rows: list[dict], key: str) -> dict[str, float]:
    by = {r["steps"]: r[key] for r in rows}
    s = sorted(by)
    return {f"{b // s[0]}x/{a // s[0]}x": by[b] / by[a] for a, b in zip(s, s[1:], strict=False)}


def report(res: dict) -> str:
    m = res["machine"]
    lines = [f"# Inference benchmark ({res['date']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}; Python {m['python']}, "
             f"torch {m['torch']}, traincheck {m['traincheck']} at commit {m['commit']} "
             "(the core measured is exported from that commit). Load average at end: "
             f"{res['load_average']}.", "",
             f"Workload: `benchmarks/inference/cnn.py --blocks {res['blocks']}` recorded with "
             "`traincheck run --plugin torch` at 1x, 2x, 4x the steps; best of "
             f"{res['repeats']} `traincheck infer` runs (wall), min CPU s (user+sys incl. "
             "workers), peak RSS of the largest process.", "",
             "| steps | trace MB | events | jobs | invariants | wall s | CPU s | MB/s "
             "| peak RSS MB | byte-identical reruns |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in res["infer"]:
        lines.append(f"| {r['steps']} | {r['trace_mb']:.2f} | {r['events']} | {r['jobs']} | "
                     f"{r['invariants']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
                     f"{r['mb_per_s']:.2f} | {r['peak_rss_mb']:.0f} | "
                     f"{'yes' if r['reproducible'] else 'NO'} |")
    lines += ["", "Growth when the trace doubles (must stay <= ~2.2):", ""]
    for jobs, g in res["growth"].items():
        wall = ", ".join(f"{k}: {v:.2f}" for k, v in g["wall_s"].items())
        cpu = ", ".join(f"{k}: {v:.2f}" for k, v in g["cpu_s"].items())
        lines.append(f"* jobs={jobs}: wall {wall}; CPU {cpu}")
    lines += ["", "Recording (for scale):", ""]
    for t in res["traces"]:
        lines.append(f"* {t['steps']} steps: plain training {t['plain_train_wall_s']:.1f} s, "
                     f"traced run {t['record_wall_s']:.1f} s, {t['files']} trace file(s), "
                     f"{t['trace_mb']:.2f} MB")
    c = res["comparison"]
    lines += ["", "Against the reference (the best-known implementation: 83 s for the 25 MB "
              "trace of a 60-step small CNN run, quadratic growth):", "",
              f"* Same workload (a {c['steps']}-step small CNN run): {c['ours_s']:.2f} s here "
              f"vs 83 s, **{c['speedup_same_workload']:.0f}x** faster. Most of that comes from "
              f"the trace itself: ours is {c['ours_mb']:.2f} MB against 25 MB, because the "
              "adapter records summaries of the APIs and variables that matter, not every "
              "call reachable from `import torch`.",
              f"* Per MB: {c['ours_mb_per_s']:.2f} MB/s here (best 4x run) vs "
              f"{c['reference_mb_per_s']:.2f} MB/s, {c['throughput_ratio']:.1f}x. A 25 MB "
              f"trace of this workload would take about {c['extrapolated_25mb_s']:.0f} s at "
              f"that rate (linear extrapolation from the measured growth, not measured), "
              f"**{c['speedup_comparable_trace']:.1f}x** faster than 83 s. "
              + ("This meets the 20x aim." if c["speedup_comparable_trace"] >= 20 else
                 "This does not meet the 20x aim on a comparable-size trace; it does on the "
                 "same workload."),
              f"* By CPU time (steadier on this shared machine): the 4x trace took "
              f"{c['big_cpu_s']:.2f} CPU s, {c['ours_mb_per_cpu_s']:.2f} MB per CPU second, "
              f"{c['ours_mb_per_cpu_s'] / c['reference_mb_per_s']:.1f}x the reference's "
              "MB/s (its 83 s is wall time on one thread).",
              *_previous(res),
              "* Wall times are on a shared 2-core machine (other jobs running, see the load "
              "average); `-j 2` splits the relations into two groups that each decode and "
              "assemble the trace, so with one run it mostly adds parallel work rather than "
              "removing serial work, and on a loaded machine it does not pay off."]
    return "\n".join(lines) + "\n"


def _load_previous(path: str) -> dict:
    prev = json.loads(Path(path).read_text())
    return {"machine": {"commit": prev["machine"]["commit"]}, "infer": prev["infer"],
            "load_average": prev.get("load_average")}


def _previous(res: dict) -> list[str]:
    """A bullet comparing with an earlier results file (``--previous``), when given."""
    prev = res.get("previous")
    if not prev:
        return []
    out = []
    for r in res["infer"]:
        old = next((o for o in prev["infer"] if o["steps"] == r["steps"] and
                    o["jobs"] == r["jobs"]), None)
        if old is not None and r["steps"] == 4 * res["comparison"]["steps"]:
            out.append(f"jobs={r['jobs']}: wall {old['wall_s']:.2f} -> {r['wall_s']:.2f} s "
                       f"({old['wall_s'] / r['wall_s']:.1f}x), CPU {old['cpu_s']:.2f} -> "
                       f"{r['cpu_s']:.2f} s ({old['cpu_s'] / r['cpu_s']:.1f}x)")
    return [f"* Against the previous results (commit {prev['machine']['commit']}, same "
            f"workload), 4x trace: {'; '.join(out)}. The wall ratios also reflect the load "
            f"(load average {prev.get('load_average')} then, {res['load_average']} now); the "
            "CPU ratios are the robust measure of the engine's speed-up."] if out else []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=60, help="steps of the 1x trace")
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", default="1,2", help="comma-separated -j settings")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--previous", metavar="JSON",
                    help="an earlier results file to compare with in the report")
    ap.add_argument("--report-only", metavar="JSON",
                    help="re-render the Markdown of an earlier results file and exit")
    args = ap.parse_args()
    if args.report_only:
        src = Path(args.report_only)
        res = json.loads(src.read_text())
        big = min((r for r in res["infer"] if r["steps"] == 4 * res["comparison"]["steps"]),
                  key=lambda r: r["wall_s"])
        res["comparison"].setdefault("big_cpu_s", big["cpu_s"])
        res["comparison"].setdefault("ours_mb_per_cpu_s", big["trace_mb"] / big["cpu_s"])
        if args.previous:
            res["previous"] = _load_previous(args.previous)
        src.write_text(json.dumps(res, indent=2) + "\n")
        src.with_suffix(".md").write_text(report(res))
        print(report(res))
        return 0
    jobs = [int(j) for j in args.jobs.split(",")]
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    with tempfile.TemporaryDirectory(prefix="tc-bench-infer-") as tmp:
        work = Path(tmp)
        commit = snapshot(work)
        t0 = time.perf_counter()
        traces = [record(work, args.steps * k, args.blocks) for k in (1, 2, 4)]
        rows = [infer(t, j, args.repeats, work) for j in jobs for t in traces]
        for t in traces:
            t.pop("dir")
    growth = {str(j): {k: ratios([r for r in rows if r["jobs"] == j], k)
                       for k in ("wall_s", "cpu_s")} for j in jobs}
    base = min((r for r in rows if r["steps"] == args.steps), key=lambda r: r["wall_s"])
    big = min((r for r in rows if r["steps"] == 4 * args.steps), key=lambda r: r["wall_s"])
    ref_rate = REFERENCE["trace_mb"] / REFERENCE["seconds"]
    extrapolated = REFERENCE["trace_mb"] / big["mb_per_s"]
    res = {
        "date": date, "machine": {**describe(REPO), "commit": commit, "dirty": "no"},
        "load_average": round(os.getloadavg()[0], 2),
        "blocks": args.blocks, "repeats": args.repeats, "traces": traces, "infer": rows,
        "growth": growth, "reference": REFERENCE,
        "comparison": {"steps": args.steps, "ours_s": base["wall_s"], "ours_mb": base["trace_mb"],
                       "speedup_same_workload": REFERENCE["seconds"] / base["wall_s"],
                       "ours_mb_per_s": big["mb_per_s"], "reference_mb_per_s": ref_rate,
                       "throughput_ratio": big["mb_per_s"] / ref_rate,
                       "extrapolated_25mb_s": extrapolated,
                       "speedup_comparable_trace": REFERENCE["seconds"] / extrapolated,
                       "big_cpu_s": big["cpu_s"],
                       "ours_mb_per_cpu_s": big["trace_mb"] / big["cpu_s"]},
        "total_s": time.perf_counter() - t0,
    }
    if args.previous:
        res["previous"] = _load_previous(args.previous)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"inference-{date}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"inference-{date}.md").write_text(report(res))
    print(report(res))
    worst = max(v for g in growth.values() for v in g["cpu_s"].values())
    return 0 if worst <= 2.2 else 1


if __name__ == "__main__":
    sys.exit(main())
