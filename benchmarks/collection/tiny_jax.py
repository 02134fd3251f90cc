"""Tiny JAX workloads: a tiny-step stress case for the overhead benchmarks. Run as a script:

    python tiny_jax.py {flax_mlp,optax_mlp,eager_optax} STEPS WARMUP [THREADS]

Jitted steps of 1-2 ms (small MLPs on a batch of 128x64), where every microsecond of Python a
probe adds per step shows; reported in their own rows, next to the three models of
``workloads_jax.py``:

* ``flax_mlp``: Flax Linen MLP (2x256, dropout) with TrainState, jitted train step, a dropout
  key split every step, a jitted evaluation (dropout off) every 5 steps;
* ``optax_mlp``: plain JAX + Optax MLP, ``jit(train_step(params, opt_state, x, y))``, adam with
  clipping;
* ``eager_optax``: the same model without ``jit`` (every Optax call observed eagerly).

Prints one JSON line like ``workloads_jax.py`` (a step ends when its outputs are ready);
THREADS as there.
The same script serves the collection and the checking benchmark.
"""

from __future__ import annotations

import sys

from workloads_jax import Timer, limit_threads

EVAL_EVERY = 5  # flax_mlp evaluates (dropout off) every this many steps


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


WORKLOADS = ("flax_mlp", "optax_mlp", "eager_optax")


def main() -> None:
    name, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    limit_threads(sys.argv)
    import jax

    if name not in WORKLOADS:
        raise SystemExit(f"unknown workload {name!r} ({', '.join(WORKLOADS)})")
    gen = {"flax_mlp": _flax_mlp, "optax_mlp": _optax_mlp,
           "eager_optax": lambda n: _optax_mlp(n, use_jit=False)}[name](steps + warmup)
    timer = Timer(warmup)
    for out in gen:
        jax.block_until_ready(out)
        timer.step_done()
    print(timer.report(workload=name))


if __name__ == "__main__":
    main()
