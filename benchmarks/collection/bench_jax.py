"""Collection overhead of ``traincheck run --plugin jax`` (full tracing, no sampling).

For each JAX workload this runs the same training script plainly and under
``traincheck run --plugin jax``, as ``--repeats`` plain/traced pairs (order alternating), in
this one invocation. Per pair: median step time traced / median step time plain; per workload:
the median of the pair ratios, and the trace bytes per step. Steps are timed with
``block_until_ready`` on the step's outputs (JAX dispatches asynchronously). Targets: median
over workloads <= 1.5x, worst <= 3x (the same as for PyTorch).

Workloads (CPU, small synthetic data):
* ``flax_mlp``: Flax Linen MLP (2x256, dropout) with TrainState, jitted train step, a dropout
  key split every step, a jitted evaluation (dropout off) every 5 steps;
* ``optax_mlp``: plain JAX + Optax MLP, ``jit(train_step(params, opt_state, x, y))``, adam with
  clipping;
* ``eager_optax``: the same model without ``jit`` (every Optax call observed eagerly).

Usage: python benchmarks/collection/bench_jax.py [--steps 60] [--warmup 10] [--repeats 5]
Writes the ``collection`` part of benchmarks/results/jax-overhead-<date>.{json,md}
(``benchmarks/checking/bench_jax.py`` writes the ``checking`` part).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOADS = ("flax_mlp", "optax_mlp", "eager_optax")
EVAL_EVERY = 5  # flax_mlp evaluates (dropout off) every this many steps
TARGET_MEDIAN, TARGET_WORST = 1.5, 3.0
ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


# ----------------------------------------------------------------------------- worker side
def _data(batch: int = 128, dim: int = 64):
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, dim)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray((x[:, 0] > 0).astype(np.int32))


def _flax_mlp(steps: int):
    import jax
    import optax
    from flax import linen as nn
    from flax.training import train_state

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            for _ in range(2):
                x = nn.Dropout(0.1, deterministic=not train)(nn.relu(nn.Dense(256)(x)))
            return nn.Dense(2)(x)

    @jax.jit
    def train_step(state, x, y, key):
        def loss_fn(p):
            logits = state.apply_fn({"params": p}, x, train=True, rngs={"dropout": key})
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    @jax.jit
    def eval_step(state, x, y):
        logits = state.apply_fn({"params": state.params}, x, train=False)
        return (logits.argmax(-1) == y).mean()

    x, y = _data()
    key = jax.random.PRNGKey(0)
    model = MLP()
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=model.init(key, x, train=False)["params"],
        tx=optax.adam(1e-3))
    for i in range(steps):
        key, sub = jax.random.split(key)
        state, loss = train_step(state, x, y, sub)
        if i % EVAL_EVERY == EVAL_EVERY - 1:
            loss = (loss, eval_step(state, x, y))
        yield (state.params, loss)


def _params(key, dim=64, hidden=256):
    import jax
    import jax.numpy as jnp

    k1, k2, k3 = jax.random.split(key, 3)
    return {"w1": jax.random.normal(k1, (dim, hidden)) * 0.1, "b1": jnp.zeros(hidden),
            "w2": jax.random.normal(k2, (hidden, hidden)) * 0.1, "b2": jnp.zeros(hidden),
            "w3": jax.random.normal(k3, (hidden, 2)) * 0.1, "b3": jnp.zeros(2)}


def _loss(params, x, y):
    import jax.numpy as jnp
    import optax

    h = jnp.tanh(x @ params["w1"] + params["b1"])
    h = jnp.tanh(h @ params["w2"] + params["b2"])
    logits = h @ params["w3"] + params["b3"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _optax_mlp(steps: int, use_jit: bool = True):
    import jax
    import optax

    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))

    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(_loss)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step_fn = jax.jit(train_step) if use_jit else train_step
    x, y = _data()
    params = _params(jax.random.PRNGKey(0))
    opt_state = tx.init(params)
    for _ in range(steps):
        params, opt_state, loss = step_fn(params, opt_state, x, y)
        yield (params, loss)


def worker(name: str, steps: int, warmup: int) -> None:
    import jax

    gen = {"flax_mlp": lambda n: _flax_mlp(n), "optax_mlp": lambda n: _optax_mlp(n),
           "eager_optax": lambda n: _optax_mlp(n, use_jit=False)}[name](steps + warmup)
    times: list[float] = []
    cpu: list[float] = []
    thread: list[float] = []  # the training thread alone (not the trace writer's, XLA's)
    t0, c0, h0 = time.perf_counter(), time.process_time(), time.thread_time()
    for i, out in enumerate(gen):
        jax.block_until_ready(out)
        t1, c1, h1 = time.perf_counter(), time.process_time(), time.thread_time()
        if i >= warmup:
            times.append(t1 - t0)
            cpu.append(c1 - c0)
            thread.append(h1 - h0)
        t0, c0, h0 = time.perf_counter(), time.process_time(), time.thread_time()
    print(json.dumps({"times": times, "cpu": cpu, "thread": thread}))


# ----------------------------------------------------------------------------- driver side
def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}


def run_checked(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if out.returncode != 0:
        raise SystemExit(f"{what} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out


def times_of(out: subprocess.CompletedProcess[str]) -> dict[str, list[float]]:
    """Per timed step: wall seconds (``times``) and process CPU seconds, all threads (``cpu``)."""
    return json.loads(out.stdout.strip().splitlines()[-1])


def medians(t: dict[str, list[float]]) -> tuple[float, float]:
    return statistics.median(t["times"]), statistics.median(t["cpu"])


class Pairs:
    """Per plain/instrumented pair: median step times (wall and CPU) and their ratios."""

    def __init__(self) -> None:
        self.wall: list[tuple[float, float]] = []
        self.cpu: list[tuple[float, float]] = []
        self.thread: list[tuple[float, float]] = []

    def add(self, plain: dict, other: dict) -> tuple[float, float]:
        (pw, pc), (ow, oc) = medians(plain), medians(other)
        self.wall.append((pw, ow))
        self.cpu.append((pc, oc))
        self.thread.append((statistics.median(plain["thread"]),
                            statistics.median(other["thread"])))
        return ow / pw, oc / pc

    def row(self, other: str) -> dict:
        wr = [o / p for p, o in self.wall]
        cr = [o / p for p, o in self.cpu]
        return {"ratio_median": statistics.median(wr), "ratios": wr,
                "cpu_ratio_median": statistics.median(cr), "cpu_ratios": cr,
                "plain_step_ms": statistics.median(p for p, _ in self.wall) * 1e3,
                f"{other}_step_ms": statistics.median(o for _, o in self.wall) * 1e3,
                "plain_cpu_ms": statistics.median(p for p, _ in self.cpu) * 1e3,
                f"{other}_cpu_ms": statistics.median(o for _, o in self.cpu) * 1e3,
                "thread_ratio_median": statistics.median(o / p for p, o in self.thread),
                "plain_thread_ms": statistics.median(p for p, _ in self.thread) * 1e3,
                f"{other}_thread_ms": statistics.median(o for _, o in self.thread) * 1e3}


def worker_cmd(name: str, steps: int, warmup: int) -> list[str]:
    return [str(Path(__file__).resolve()), "--worker", name, str(steps), str(warmup)]


def tc(*args: str) -> list[str]:
    return [sys.executable, "-m", "traincheck_core", *args]


def plain(name: str, steps: int, warmup: int) -> dict[str, list[float]]:
    return times_of(run_checked([sys.executable, *worker_cmd(name, steps, warmup)],
                                f"plain {name}"))


def trace_bytes(run_dir: Path) -> int:
    return sum(f.stat().st_size for f in run_dir.iterdir() if f.suffix == ".tctrace")


def bench(name: str, steps: int, warmup: int, repeats: int, work: Path) -> dict:
    pairs, sizes = Pairs(), []
    for r in range(repeats):
        got: dict[str, dict] = {}
        for kind in (("plain", "traced") if r % 2 == 0 else ("traced", "plain")):
            if kind == "plain":
                got[kind] = plain(name, steps, warmup)
                continue
            out = work / f"{name}-{r}"
            got[kind] = times_of(run_checked(tc("run", "-q", "--plugin", "jax", "-o", str(out),
                                                *worker_cmd(name, steps, warmup)),
                                             f"traced {name}"))
            sizes.append(trace_bytes(out))
        wr, cr = pairs.add(got["plain"], got["traced"])
        print(f"  {name} pair {r + 1}/{repeats}: wall ratio {wr:.3f}, cpu ratio {cr:.3f}",
              flush=True)
    return {"workload": name, **pairs.row("traced"),
            "trace_bytes_per_step": statistics.median(sizes) / (steps + warmup)}


def summarize(rows: list[dict], target_median: float, target_worst: float) -> dict:
    medians = [r["ratio_median"] for r in rows]
    s = {"median": statistics.median(medians), "worst": max(medians),
         "target_median": target_median, "target_worst": target_worst}
    s["meets_targets"] = s["median"] <= target_median and s["worst"] <= target_worst
    return s


# ----------------------------------------------------------------------------- results file
def update_results(part: str, data: dict, out: Path = RESULTS) -> Path:
    """Write ``part`` (collection | checking) into jax-overhead-<date>.json and regenerate the
    Markdown next to it; the other part, if already measured today, is kept."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.suite.machine import describe

    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"jax-overhead-{dt.datetime.now(dt.timezone.utc).date().isoformat()}"
    path = stem.with_suffix(".json")
    result = json.loads(path.read_text()) if path.exists() else {"benchmark": "jax-overhead"}
    result[part] = data
    result["machine"] = describe(ROOT)
    result["frameworks"] = _versions()
    path.write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return path


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in ("jax", "jaxlib", "optax", "flax"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _verdict(s: dict) -> str:
    ok = "meets" if s["meets_targets"] else "does NOT meet"
    return (f"Median over workloads **{s['median']:.3f}x** (target <= {s['target_median']}x), "
            f"worst **{s['worst']:.3f}x** (target <= {s['target_worst']}x): {ok} the targets.")


def _cpu_note(c: dict) -> str:
    cr = [w["cpu_ratio_median"] for w in c["workloads"]]
    note = (f"CPU-time ratios (process CPU seconds per step, all threads; less sensitive to "
            f"other load on the machine): median {statistics.median(cr):.3f}x, worst "
            f"{max(cr):.3f}x.")
    if all("plain_thread_ms" in w for w in c["workloads"]):
        other = "traced" if "traced_thread_ms" in c["workloads"][0] else "checked"
        per = ", ".join(f"{w['workload']} {w['plain_thread_ms']:.3f} -> "
                        f"{w[f'{other}_thread_ms']:.3f} ms" for w in c["workloads"])
        note += (" Training-thread CPU per step (the thread that runs the step: traincheck's "
                 f"probes, not XLA's or the trace writer's threads): {per}.")
    return note


def markdown(r: dict) -> str:
    lines = ["# JAX overhead", ""]
    versions = ", ".join(f"{k} {v}" for k, v in r.get("frameworks", {}).items())
    if "collection" in r:
        c, st = r["collection"], r["collection"]["settings"]
        lines += [f"## Collection (full tracing), {c['date']}", "",
                  "`traincheck run --plugin jax` vs. the same script without traincheck, "
                  f"{st['repeats']} plain/traced pairs per workload (order alternating) in one "
                  f"invocation, {st['steps']} timed steps after {st['warmup']} warm-up steps "
                  "per run; every step traced (no sampling).", "",
                  "| workload | plain ms/step | traced ms/step | ratio (median) | pair ratios "
                  "| CPU-time ratio (median) | trace bytes/step |",
                  "|---|---|---|---|---|---|---|"]
        for w in c["workloads"]:
            pairs = ", ".join(f"{x:.2f}" for x in w["ratios"])
            lines.append(f"| {w['workload']} | {w['plain_step_ms']:.2f} | "
                         f"{w['traced_step_ms']:.2f} | **{w['ratio_median']:.2f}x** | {pairs} | "
                         f"{w['cpu_ratio_median']:.2f}x | {w['trace_bytes_per_step']:.0f} |")
        lines += ["", _verdict(c["summary"]), _cpu_note(c), ""]
    if "checking" in r:
        c, st = r["checking"], r["checking"]["settings"]
        lines += [f"## Online checking, {c['date']}", "",
                  "`traincheck run --plugin jax --invariants FILE` vs. the same script without "
                  f"traincheck, {st['repeats']} plain/checked pairs per workload (order "
                  f"alternating) in one invocation, {st['steps']} timed steps after "
                  f"{st['warmup']} warm-up steps per run; every step checked (no sampling). "
                  "Invariants inferred from one fully traced healthy run of "
                  f"{st['ref_steps']} steps.", "",
                  "| workload | invariants | plain ms/step | checked ms/step | ratio (median) | "
                  "pair ratios | CPU-time ratio (median) | false alarms | events: full trace / "
                  "checked run |", "|---|---|---|---|---|---|---|---|---|"]
        for w in c["workloads"]:
            pairs = ", ".join(f"{x:.3f}" for x in w["ratios"])
            lines.append(f"| {w['workload']} | {w['invariants']} | {w['plain_step_ms']:.2f} | "
                         f"{w['checked_step_ms']:.2f} | **{w['ratio_median']:.3f}x** | {pairs} "
                         f"| {w['cpu_ratio_median']:.3f}x | {w['false_alarms']} | "
                         f"{w['events_full_trace_ref']} ({w['ref_steps']} steps) / "
                         f"{w['events_checked_run']} ({w['checked_steps']} steps) |")
        lines += ["", _verdict(c["summary"]), _cpu_note(c), ""]
    lines += ["## Machine", "", f"- frameworks: {versions}"]
    lines += [f"- {k}: {v}" for k, v in r.get("machine", {}).items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=60, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    ap.add_argument("--repeats", type=int, default=5, help="plain/traced pairs per workload")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tc-bench-jax-") as tmp:
        rows = []
        for w in a.workloads.split(","):
            print(f"{w}: {a.repeats} plain/traced pairs", flush=True)
            rows.append(bench(w, a.steps, a.warmup, a.repeats, Path(tmp)))
    update_results("collection", {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"steps": a.steps, "warmup": a.warmup, "repeats": a.repeats,
                     "sampling": "none (every step)"},
        "workloads": rows, "summary": summarize(rows, TARGET_MEDIAN, TARGET_WORST)},
        Path(a.out))


if __name__ == "__main__":
    main()
