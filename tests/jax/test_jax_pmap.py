"""``jax.pmap``-compiled train steps are observed like jitted ones: each call is a
``jax.pmap.<qualname>`` call whose replicated parameters and optimizer state are tracked
variables, whose trace profile (the Optax calls JAX saw while tracing) completes optimizer
steps, and whose results are bit-identical with tracing on. A step that drops its update is
caught online from invariants inferred on the healthy pmap loop."""

from __future__ import annotations

import numpy as np
import pytest
from tracehelp import Trace

pytestmark = pytest.mark.jax

LOOP = """
import sys
import numpy as np
import jax, jax.numpy as jnp, optax

DROP_AT = {drop_at}
tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
n = jax.local_device_count()

def loss_fn(params, x):
    return ((x @ params["w"] + params["b"]) ** 2).mean()

def make_step(apply):
    def train_step(params, opt_state, x):
        grads = jax.grad(loss_fn)(params, x)
        grads = jax.lax.pmean(grads, axis_name="d")
        updates, opt_state = tx.update(grads, opt_state, params)
        new = optax.apply_updates(params, updates)
        return (new if apply else params), opt_state
    return jax.pmap(train_step, axis_name="d")

good, dropped = make_step(True), make_step(False)
params = {{"w": jnp.arange(8.0).reshape(4, 2) / 8, "b": jnp.zeros(2)}}
opt_state = tx.init(params)
rep = lambda t: jax.tree_util.tree_map(lambda a: jnp.stack([a] * n), t)
params, opt_state = rep(params), rep(opt_state)
x = jnp.ones((n, 3, 4))
for i in range(6):
    step = dropped if i == DROP_AT else good
    params, opt_state = step(params, opt_state, x)
np.save(sys.argv[1], np.asarray(params["w"]))
"""


def _run(runner, name: str, drop_at: int, *traincheck: str):
    runner.script(f"{name}.py", LOOP.format(drop_at=drop_at))
    if not traincheck:
        return runner.python(f"{name}.py", f"{name}.npy")
    return runner.traincheck("run", "--plugin", "jax", *traincheck, "-o", name, f"{name}.py",
                             f"{name}.npy")


def test_pmap_steps_are_traced_and_results_unchanged(runner) -> None:
    assert _run(runner, "plain", -1).returncode == 0
    res = _run(runner, "ref", -1, "-q")
    assert res.returncode == 0, res.stderr
    assert np.array_equal(np.load(runner.path / "plain.npy"), np.load(runner.path / "ref.npy"))
    t = Trace(runner.path / "ref")
    assert len(t.calls_of("jax.pmap.make_step.<locals>.train_step")) == 6
    changed = t.changes_by_api()
    assert changed["params/w"] == {"jax.pmap.make_step.<locals>.train_step": 6}
    steps = [m.get("step") for v, m in t.vars if v.name == "params/w" and v.call]
    assert steps == [0, 1, 2, 3, 4, 5]  # each call completed one optimizer step


def test_dropped_update_in_a_pmap_step_is_caught_online(runner) -> None:
    assert _run(runner, "ref", -1, "-q").returncode == 0
    inf = runner.traincheck("infer", "-q", "-j", "1", "-o", "inv.jsonl", "ref")
    assert inf.returncode == 0, inf.stderr
    ok = _run(runner, "ok", -1, "--invariants", "inv.jsonl")
    assert ok.returncode == 0 and "VIOLATION" not in ok.stderr, ok.stderr
    bad = _run(runner, "bad", 3, "--invariants", "inv.jsonl")
    assert bad.returncode == 0, bad.stderr
    found = [ln for ln in bad.stderr.splitlines() if ln.startswith("traincheck: VIOLATION")]
    assert found and found[0].startswith("traincheck: VIOLATION at step 3 "), bad.stderr
