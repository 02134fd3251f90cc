"""The JAX adapter on real (tiny) JAX/Optax/Flax training loops, run as users run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tracehelp import Trace

pytestmark = pytest.mark.jax

REPO = Path(__file__).resolve().parents[2]
HEALTHY = REPO / "benchmarks" / "healthy" / "jax_flax_mlp.py"
BUGS = REPO / "benchmarks" / "bugs"

# Prints a digest of every final parameter and opt-state byte and the exact losses, so two
# runs can be compared bit for bit.
DIGEST = """
import hashlib, sys
import numpy as np, jax
sys.path.insert(0, {dir!r})
import jax_flax_mlp as prog
state, losses = prog.main(steps=5)
h = hashlib.sha256()
for leaf in jax.tree_util.tree_leaves((state.params, state.opt_state)):
    h.update(np.asarray(leaf).tobytes())
print("DIGEST", h.hexdigest(), repr(losses))
"""


def digest_of(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("DIGEST"))


def test_flax_loop_traced_end_to_end(runner) -> None:
    res = runner.traincheck("run", "--plugin", "jax", "-o", "out", str(HEALTHY))
    assert res.returncode == 0, res.stderr
    ins = runner.traincheck("inspect", "--json", "out")
    assert ins.returncode == 0, ins.stderr
    (row,) = json.loads(ins.stdout)
    assert row["complete"] and row["steps"] == 8
    for api in ("jax.jit.train_step", "jax.jit.eval_step", "jax.random.split",
                "optax.GradientTransformation.update", "optax.apply_updates",
                "flax.training.train_state.TrainState.apply_gradients",
                "flax.linen.Module.apply", "flax.linen.Dropout.__call__"):
        assert api in row["apis"], api
    assert row["apis"]["jax.jit.train_step"] == 8

    t = Trace(runner.path / "out")
    assert {"params/Dense_0/kernel", "params/Dense_1/bias",
            "opt_state/0/mu/Dense_0/kernel"} <= t.var_names()
    changes = t.changes_by_api()
    assert changes["params/Dense_0/kernel"] == {"jax.jit.train_step": 8}
    steps = [c.api for c, _ in t.calls_of("jax.jit.train_step")]
    assert len(steps) == 8
    # each step consumed its own dropout key
    keys = [c.args["dropout_key"].fp for c, _ in t.calls_of("jax.jit.train_step")]
    assert None not in keys and len(set(keys)) == 8
    # stage: train steps are "train", the evaluation is "eval" with dropout off
    assert {m["stage"] for _, m in t.calls_of("jax.jit.train_step")} == {"train"}
    (ev, ev_meta), = t.calls_of("jax.jit.eval_step")
    assert ev_meta["stage"] == "eval" and ev_meta["step"] == 8
    drop = [c for c, _ in t.calls_of("flax.linen.Dropout.__call__") if c.parent == ev.id]
    assert drop and drop[0].args["active"].v is False
    # calls replayed from the compiled function's trace are marked and parented
    inner = [c for c, _ in t.calls_of("optax.apply_updates")]
    assert all(c.args["in_jit"].v is True and t.api_of[c.parent] == "jax.jit.train_step"
               for c in inner)


def test_results_bit_identical_with_tracing(runner) -> None:
    runner.script("digest.py", DIGEST.format(dir=str(HEALTHY.parent)))
    plain = runner.python("digest.py")
    traced = runner.traincheck("run", "--plugin", "jax", "-o", "out", "digest.py")
    assert plain.returncode == 0 and traced.returncode == 0, plain.stderr + traced.stderr
    assert digest_of(plain.stdout) == digest_of(traced.stdout)
    assert Trace(runner.path / "out").calls_of("jax.jit.train_step")  # it really traced


def test_fail_open_probe_error_keeps_training_identical(runner) -> None:
    sabotage = DIGEST.replace("import jax_flax_mlp as prog", """import jax_flax_mlp as prog
from traincheck_jax.instrumentor import INSTRUMENTOR
def boom(x):
    raise RuntimeError("simulated probe bug")
INSTRUMENTOR.adapter.kit.fingerprint = boom""")
    runner.script("digest.py", DIGEST.format(dir=str(HEALTHY.parent)))
    runner.script("sabotaged.py", sabotage.format(dir=str(HEALTHY.parent)))
    plain = runner.python("digest.py")
    traced = runner.traincheck("run", "--plugin", "jax", "-o", "out", "sabotaged.py")
    assert traced.returncode == 0, traced.stderr
    assert digest_of(plain.stdout) == digest_of(traced.stdout)
    assert traced.stderr.count("simulated probe bug") >= 1
    assert "training continues" in traced.stderr
    # each failing probe is reported once and switched off; the trace is still complete
    lines = [ln for ln in traced.stderr.splitlines() if "simulated probe bug" in ln]
    assert len(lines) == len(set(lines))
    ins = json.loads(runner.traincheck("inspect", "--json", "out").stdout)
    assert ins[0]["complete"]


def test_instrument_idempotent_and_reversible(runner) -> None:
    runner.script("rev.py", """
        import tempfile
        from traincheck_core import Config, start_session
        session = start_session(Config(output=tempfile.mkdtemp(), plugins=["jax"]),
                                export_env=False)
        import jax, optax
        from flax import linen as nn
        from flax.training import train_state
        from traincheck_jax.instrumentor import INSTRUMENTOR
        originals = {"jit": jax.jit.__wrapped__, "split": jax.random.split.__wrapped__,
                     "apply": nn.Module.apply.__wrapped__,
                     "apply_updates": optax.apply_updates.__wrapped__}
        n = len(INSTRUMENTOR.patches)
        INSTRUMENTOR.instrument(session)
        assert len(INSTRUMENTOR.patches) == n, "second instrument changed something"
        INSTRUMENTOR.uninstrument(); INSTRUMENTOR.uninstrument()
        assert jax.jit is originals["jit"] and jax.random.split is originals["split"]
        assert nn.Module.apply is originals["apply"]
        assert optax.apply_updates is originals["apply_updates"]
        assert len(INSTRUMENTOR.patches) == 0
        INSTRUMENTOR.instrument(session)
        assert jax.jit is not originals["jit"] and len(INSTRUMENTOR.patches) == n
        f = jax.jit(lambda x: x * 2)
        print("OK", n, float(f(jax.numpy.ones(()))))
    """)
    res = runner.python("rev.py")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("OK")


def test_eager_optax_loop_tracks_grads_and_steps(runner) -> None:
    runner.script("eager.py", """
        import jax, jax.numpy as jnp, optax
        params = {"w": jnp.ones((4, 2)), "b": jnp.zeros(2)}
        tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1))
        opt_state = tx.init(params)
        x = jnp.arange(12.0).reshape(3, 4)
        def loss_fn(params, x):
            return ((x @ params["w"] + params["b"]) ** 2).mean()
        for _ in range(3):
            grads = jax.grad(loss_fn)(params, x)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
    """)
    res = runner.traincheck("run", "--plugin", "jax", "-o", "out", "eager.py")
    assert res.returncode == 0, res.stderr
    t = Trace(runner.path / "out")
    changes = t.changes_by_api()
    assert changes["params/w"] == {"optax.apply_updates": 3}
    applied = [(v, m) for v, m in t.vars if v.name == "params/w" and v.call]
    assert [m["step"] for _, m in applied] == [0, 1, 2]
    assert all(v.attrs["grad"] for v, _ in applied)  # gradient fingerprint known eagerly
    outer = [c for c, _ in t.calls_of("optax.GradientTransformation.update") if not c.parent]
    assert len(outer) == 3 and outer[0].args["self"].type == "optax.chain"
    inner = {c.args["self"].type for c, _ in t.calls_of("optax.GradientTransformation.update")
             if c.parent}
    assert "optax.clip_by_global_norm" in inner
    grads = t.calls_of("jax.grad.loss_fn")
    assert len(grads) == 3 and grads[0][0].args["wrt"].v == "params"


def test_nnx_optimizer_and_train_eval_stage(runner) -> None:
    runner.script("nnx_loop.py", """
        import jax, jax.numpy as jnp, optax
        from flax import nnx
        class Net(nnx.Module):
            def __init__(self, rngs):
                self.l1 = nnx.Linear(4, 8, rngs=rngs)
                self.drop = nnx.Dropout(0.5, rngs=rngs)
                self.l2 = nnx.Linear(8, 1, rngs=rngs)
            def __call__(self, x):
                return self.l2(self.drop(jax.nn.relu(self.l1(x))))
        model = Net(nnx.Rngs(0))
        opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
        x = jnp.ones((5, 4))
        def loss_fn(model):
            return (model(x) ** 2).mean()
        model.train()
        for _ in range(2):
            grads = nnx.grad(loss_fn)(model)
            opt.update(model, grads)
        model.eval()
        model(x)
    """)
    res = runner.traincheck("run", "--plugin", "jax", "-o", "out", "nnx_loop.py")
    assert res.returncode == 0, res.stderr
    t = Trace(runner.path / "out")
    assert len(t.calls_of("flax.nnx.Optimizer.update")) == 2
    changed = t.changes_by_api()
    kernel = next(n for n in changed if n.startswith("params/") and "l1" in n and
                  n.endswith("kernel"))
    assert changed[kernel] == {"flax.nnx.Optimizer.update": 2}
    drops = t.calls_of("flax.nnx.Dropout.__call__")
    assert drops[-1][1]["stage"] == "eval" and drops[-1][0].args["active"].v is False
    assert drops[0][1]["stage"] == "train" and drops[0][0].args["active"].v is True


# The lowered program (StableHLO text) of the healthy train step: tracing must not add or
# change a single operation (every probe that runs while JAX traces sees tracers, and a probe
# that concretized one would raise here instead).
LOWERED = """
import hashlib, sys
import jax, jax.numpy as jnp, optax
sys.path.insert(0, {dir!r})
import jax_flax_mlp as prog
from flax.training import train_state
model = prog.MLP()
x, y = prog.data(0)
params = model.init(jax.random.PRNGKey(0), x, train=False)["params"]
state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(1e-2))
text = prog.train_step.lower(state, x, y, jax.random.PRNGKey(1)).as_text()
print("HLO", hashlib.sha256(text.encode()).hexdigest(), len(text))
"""


def test_compiled_program_unchanged_by_tracing(runner) -> None:
    runner.script("lowered.py", LOWERED.format(dir=str(HEALTHY.parent)))
    plain = runner.python("lowered.py")
    traced = runner.traincheck("run", "--plugin", "jax", "-o", "out", "lowered.py")
    assert plain.returncode == 0 and traced.returncode == 0, plain.stderr + traced.stderr
    hlo = [next(ln for ln in r.stdout.splitlines() if ln.startswith("HLO"))
           for r in (plain, traced)]
    assert hlo[0] == hlo[1]
    # and the probes really ran while JAX traced the step, on tracers
    t = Trace(runner.path / "out")
    applied = t.calls_of("flax.training.train_state.TrainState.apply_gradients")
    assert applied and applied[0][0].args["grads"].type == "dict"
