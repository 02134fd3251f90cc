"""Plain JAX + Optax two-part model (body + head): the loss is differentiated with respect to
the parameters it actually uses, so both parts train."""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

STEPS = 8
tx = optax.adam(1e-2)


def init_params(key):
    k1, k2 = jax.random.split(key)
    return {"body": {"w": jax.random.normal(k1, (8, 32)) * 0.3, "b": jnp.zeros(32)},
            "head": {"w": jax.random.normal(k2, (32, 2)) * 0.3, "b": jnp.zeros(2)}}


@jax.jit
def train_step(params, opt_state, x, y):
    def loss_fn(p):
        h = jnp.tanh(x @ p["body"]["w"] + p["body"]["b"])
        logits = h @ p["head"]["w"] + p["head"]["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


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
