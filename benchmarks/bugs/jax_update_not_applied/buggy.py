"""BUG: the Optax update is computed, and even applied, but the result is dropped: the step
returns the old parameters, so the model never trains (the optimizer state still advances)."""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

STEPS = 8
tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))


def init_params(key):
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (8, 32)) * 0.3, "b1": jnp.zeros(32),
            "w2": jax.random.normal(k2, (32, 2)) * 0.3, "b2": jnp.zeros(2)}


def loss_fn(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    logits = h @ params["w2"] + params["b2"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@jax.jit
def train_step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)  # noqa: F841  BUG: never returned
    return params, opt_state, loss


def main(steps=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(64, 8)).astype(np.float32))
    y = jnp.asarray((np.asarray(x)[:, 0] > 0).astype(np.int32))
    params = init_params(jax.random.PRNGKey(seed))
    opt_state = tx.init(params)
    for step in range(steps):
        params, opt_state, loss = train_step(params, opt_state, x, y)
        print(f"step {step} loss {float(loss):.4f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.steps, a.seed)
