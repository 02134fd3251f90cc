"""Healthy Flax Linen + Optax training: dropout MLP, TrainState, jitted train and eval steps,
a fresh dropout key split off every step, evaluation with dropout off."""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state


class MLP(nn.Module):
    hidden: int = 32

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.relu(nn.Dense(self.hidden)(x))
        x = nn.Dropout(0.2, deterministic=not train)(x)
        return nn.Dense(2)(x)


def data(seed, n=64):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


@jax.jit
def train_step(state, x, y, dropout_key):
    def loss_fn(params):
        logits = state.apply_fn({"params": params}, x, train=True, rngs={"dropout": dropout_key})
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


@jax.jit
def eval_step(state, x, y):
    logits = state.apply_fn({"params": state.params}, x, train=False)
    return (logits.argmax(-1) == y).mean()


def main(steps=8, seed=0):
    key = jax.random.PRNGKey(seed)
    key, init_key = jax.random.split(key)
    model = MLP()
    x, y = data(seed)
    params = model.init(init_key, x, train=False)["params"]
    state = train_state.TrainState.create(apply_fn=model.apply, params=params,
                                          tx=optax.adam(1e-2))
    losses = []
    for _ in range(steps):
        key, dropout_key = jax.random.split(key)
        state, loss = train_step(state, x, y, dropout_key)
        losses.append(float(loss))
    acc = float(eval_step(state, x, y))
    print("losses", " ".join(f"{v:.6f}" for v in losses), "acc", acc)
    return state, losses


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.steps, a.seed)
