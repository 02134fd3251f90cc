"""A jitted call's tail (its results' state events, its return, the step it completes) is
emitted just before the next event instead of waiting for the compiled step: the probe must
not read the results it just dispatched, the last step must still reach the trace and the
online checker, and only the replayed child calls the deployed invariants name are emitted."""

from __future__ import annotations

import json

import pytest
from tracehelp import Trace

pytestmark = pytest.mark.jax

LOOP = """
import sys
import jax, jax.numpy as jnp, optax
from traincheck_jax.arrays import _UNREAD
from traincheck_jax.instrumentor import INSTRUMENTOR

FREEZE_LAST = {freeze}
tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))

@jax.jit
def train_step(params, opt_state, x):
    grads = jax.grad(lambda p: ((x @ p["w"]) ** 2).mean())(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

@jax.jit
def frozen_step(params, opt_state, x):  # the update is computed but never applied
    grads = jax.grad(lambda p: ((x @ p["w"]) ** 2).mean())(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return params, opt_state

params = {{"w": jnp.arange(8.0).reshape(4, 2) / 8}}
opt_state, x = tx.init(params), jnp.ones((3, 4))
unread = []
steps = 6
for i in range(steps):
    step = frozen_step if FREEZE_LAST and i == steps - 1 else train_step
    params, opt_state = step(params, opt_state, x)
    seen = INSTRUMENTOR.adapter.kit._seen.get(id(params["w"]))
    unread.append(seen is None or seen[2] is _UNREAD)  # not fingerprinted by the probe
print("UNREAD", sum(unread), "OF", steps)
"""


def _run(runner, name: str, freeze: bool, *extra: str):
    runner.script(f"{name}.py", LOOP.format(freeze=freeze))
    return runner.traincheck("run", "--plugin", "jax", "-o", name, *extra, f"{name}.py")


def test_jitted_results_are_not_read_when_the_call_returns(runner) -> None:
    res = _run(runner, "ref", False)
    assert res.returncode == 0, res.stderr
    # the probe returned every step without fingerprinting (so without waiting for) its results
    assert "UNREAD 6 OF 6" in res.stdout, res.stdout
    t = Trace(runner.path / "ref")
    # ...and every step's changes still reached the trace, the last one at the session's end
    assert t.changes_by_api()["params/w"] == {"jax.jit.train_step": 6}
    steps = [m.get("step") for v, m in t.vars if v.name == "params/w" and v.call]
    assert steps == [0, 1, 2, 3, 4, 5]


def test_last_step_is_checked_online_and_replay_follows_the_plan(runner) -> None:
    from traincheck_core.check.online import load_all
    from traincheck_core.check.plan import compile_plan, load_relations

    assert _run(runner, "ref", False).returncode == 0
    inv = runner.path / "inv.jsonl"
    res = runner.traincheck("infer", "-q", "ref", "-o", str(inv))
    assert res.returncode == 0, res.stderr
    # the healthy rerun is clean; the run whose last step drops the update is caught although
    # that step's results are only read when the session ends
    clean = _run(runner, "clean", False, "--invariants", str(inv))
    assert clean.returncode == 0 and "VIOLATION" not in clean.stderr, clean.stderr
    # deploy only "every variable changes every step": no API is named, so nothing inside the
    # jitted step is replayed, and the frozen last step is still caught
    lines = inv.read_text().splitlines()
    sub = runner.path / "evolution.jsonl"
    sub.write_text("\n".join([lines[0], *(ln for ln in lines[1:]
                                          if json.loads(ln)["relation"] == "StepEvolution")]))
    plan = compile_plan(load_all([str(sub)]), load_relations(["jax"]))
    assert not plan.full and not plan.apis and plan.variables
    bad = _run(runner, "bad", True, "--invariants", str(sub))
    assert bad.returncode == 0, bad.stderr
    found = [ln for ln in bad.stderr.splitlines() if ln.startswith("traincheck: VIOLATION")]
    assert found and all(ln.startswith("traincheck: VIOLATION at step 5 ") for ln in found), \
        bad.stderr
    replayed = {c.api for c, _ in Trace(runner.path / "bad").calls if "in_jit" in c.args}
    full = {c.api for c, _ in Trace(runner.path / "ref").calls if "in_jit" in c.args}
    assert full >= {"optax.GradientTransformation.update", "optax.apply_updates"}
    assert not replayed


FORK = """
import os
import jax, jax.numpy as jnp, optax
from traincheck_core import get_session

tx = optax.sgd(0.1)

@jax.jit
def train_step(params, opt_state):
    grads = jax.grad(lambda p: (p["w"] ** 2).sum())(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

params = {"w": jnp.ones(4)}
opt_state = tx.init(params)
extra = {"b": jnp.zeros(2)}
params, opt_state = train_step(params, opt_state)
jax.block_until_ready(params)  # the results are ready; the probe has not emitted its tail yet
pid = os.fork()
if pid == 0:  # a worker process: its trace must not get the parent's pending step
    tx.init(extra)  # an observed call that computes nothing: the child's first event
    get_session().close("exit")
    os._exit(0)
os.waitpid(pid, 0)
params, opt_state = train_step(params, opt_state)
print("DONE")
"""


def test_a_forked_child_does_not_emit_the_parents_pending_tail(runner) -> None:
    from traincheck_core import Header, MetaUpdate, iter_run

    runner.script("fork.py", FORK)
    res = runner.traincheck("run", "-q", "--plugin", "jax", "-o", "out", "fork.py",
                            timeout=120)
    assert res.returncode == 0 and "DONE" in res.stdout, res.stderr
    by_source: dict[int, list] = {}
    for rec in iter_run(runner.path / "out"):
        by_source.setdefault(rec.source, []).append(rec.event)
    assert len(by_source) == 2  # the parent's trace and the child's
    parent, child = sorted(by_source.values(), key=len, reverse=True)
    assert isinstance(child[0], Header) and child[0].ppid == parent[0].pid
    def steps(events: list) -> list:
        return [e.values["step"] for e in events
                if isinstance(e, MetaUpdate) and "step" in e.values]
    def leaf_states(events: list) -> list:
        return [e for e in events if type(e).__name__ == "VarState" and e.call]
    assert steps(parent)[-2:] == [1, 2] and leaf_states(parent)
    assert {e.api for e in child if type(e).__name__ == "CallStart"} == {
        "optax.GradientTransformation.init"}
    # the parent's first step was still pending at the fork: the child never reaches step 1
    assert all(s < 1 for s in steps(child)) and not leaf_states(child)
