"""Time spent inside the PyTorch adapter's probes per training step, under online checking.

Wall-clock ratios (``bench_checking.py``) on a small shared VM move by several percent from
one process to the next, plain runs included; the time the training thread spends inside
traincheck's own probes is a steadier measure of what checking costs it (it leaves out
effects on the rest of the step, such as caches the probes and the checker process share with
training). For each workload: infer invariants from a fully traced reference run, then run
``loop.py`` under ``traincheck run --invariants`` with a timer around every probe entry point
(module forward pre/post hooks, optimizer step pre/post hooks, and the argument summaries and
post-call observations of every patched API; not the wrapped calls themselves) over the steps
after the warm-up ones, and report milliseconds per step inside probes, by probe, and as a
share of the checked run's median step.

Usage: python benchmarks/checking/probe_costs.py [--workloads cnn,lm,mlp] [--runs 2]
Prints a Markdown table (stdout).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_checking import _env, reference  # noqa: E402

STEPS, WARMUP = 40, 5

#: Runs inside ``traincheck run``: wraps the probe entry points with timers, runs loop.py.
TIMED_LOOP = """
import collections, contextlib, functools, io, json, sys, time
sys.argv = ["loop.py", {workload!r}, "{steps}", "{warmup}", "1"]
sys.path.insert(0, {here!r})
import traincheck_torch.instrumentor as I
spent = collections.Counter()
steps = [0]  # optimizer steps finished; probes are timed after the warm-up ones

def timed(name):
    inner = getattr(I.TorchInstrumentor, name)

    @functools.wraps(inner)
    def probe(*args, **kwargs):
        t0 = time.perf_counter_ns()
        try:
            return inner(*args, **kwargs)
        finally:
            if steps[0] >= {warmup}:
                spent[name] += time.perf_counter_ns() - t0
            if name == "_step_post":
                steps[0] += 1
    setattr(I.TorchInstrumentor, name, probe)

for name in ["_fwd_pre", "_fwd_post", "_step_pre", "_step_post", "_args", "_ret",
             "_init_args"] + [n for n in vars(I.TorchInstrumentor) if n.startswith("_post_")]:
    if hasattr(I.TorchInstrumentor, name):
        timed(name)
import loop
out = io.StringIO()
with contextlib.redirect_stdout(out):
    loop.main()
times = json.loads(out.getvalue().strip().splitlines()[-1])["times"]
print(json.dumps({{"spent_ns": dict(spent), "steps": {steps}, "times": times}}))
"""


def timed_run(workload: str, inv: Path, work: Path) -> dict:
    script = work / f"timed-{workload}.py"
    script.write_text(TIMED_LOOP.format(workload=workload, steps=STEPS, warmup=WARMUP,
                                        here=str(HERE)))
    cmd = [sys.executable, "-m", "traincheck_core", "run", "-q", "--plugin", "torch",
           "--checker-cpus", "1", "-o", str(work / f"out-{workload}"), "--invariants", str(inv),
           str(script)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=work)
    if res.returncode != 0:
        raise SystemExit(f"timed run of {workload} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="cnn,lm,mlp")
    ap.add_argument("--runs", type=int, default=2, help="timed runs per workload")
    args = ap.parse_args()
    print("| workload | invariants | in probes, ms/step | share of the step | largest probes, "
          "ms/step |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="tc-probe-costs-") as tmp:
        work = Path(tmp)
        for workload in args.workloads.split(","):
            inv, count, _ = reference("torch", workload, 20, work)
            runs = [timed_run(workload, inv, work) for _ in range(args.runs)]
            per_step = [sum(r["spent_ns"].values()) / r["steps"] / 1e6 for r in runs]
            share = [p / (statistics.median(r["times"]) * 1e3)
                     for p, r in zip(per_step, runs, strict=True)]
            parts: dict[str, float] = {}
            for r in runs:
                for name, ns in r["spent_ns"].items():
                    parts[name] = parts.get(name, 0.0) + ns / r["steps"] / 1e6 / len(runs)
            top = ", ".join(f"{name.lstrip('_')} {ms:.2f}" for name, ms in
                            sorted(parts.items(), key=lambda kv: -kv[1])[:4])
            print(f"| {workload} | {count} | {statistics.median(per_step):.2f} | "
                  f"{statistics.median(share):.1%} | {top} |", flush=True)


if __name__ == "__main__":
    main()
