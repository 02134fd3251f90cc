"""The collection benchmark's three models in JAX (Flax Linen + Optax). Run as a script:

    python workloads_jax.py {cnn,lm,mlp} STEPS WARMUP [THREADS]

The same models, batch sizes and optimizers as ``workloads.py`` (PyTorch): a VGG-style CNN with
BatchNorm trained by SGD with momentum and weight decay, a 4-layer pre-norm causal transformer
LM trained by AdamW, a BatchNorm MLP with dropout trained by Adam; gradients clipped to a global
norm of 1. The train step is one ``jax.jit`` function (forward, loss, ``value_and_grad``,
``TrainState.apply_gradients``, BatchNorm statistics), with a dropout key split every step, as
Flax's own examples write it. Prints one JSON line like ``workloads.py``: the wall-clock,
process-CPU and training-thread-CPU seconds of every timed step (after WARMUP steps); a step
ends when its outputs are ready (``block_until_ready``: JAX dispatches asynchronously, and a
PyTorch CPU step is synchronous). THREADS > 0 confines the training process to that many
cores (``limit_threads``), the counterpart of ``torch.set_num_threads`` in ``workloads.py``:
XLA's CPU client sizes its thread pools by itself, and neither ``intra_op_parallelism_threads``
nor ``--xla_cpu_multi_thread_eigen=false`` changed its CPU time per step here (measured: lm
step 109-113 ms wall, 189-202 ms CPU with or without them; confined to one core, 152 ms wall,
152 ms CPU).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def limit_threads(argv: list[str]) -> None:
    """Confine this process's threads to the first THREADS cores (``argv[4]``, 0 or absent:
    all cores). Call before JAX starts: threads started later inherit the calling thread's
    CPU set, and XLA starts its thread pools with its first computation."""
    import os

    threads = int(argv[4]) if len(argv) > 4 else 0
    cores = sorted(os.sched_getaffinity(0))
    if 0 < threads < len(cores):
        os.sched_setaffinity(0, cores[:threads])


def _models() -> dict[str, Any]:
    from flax import linen as nn

    class CNN(nn.Module):
        """A small VGG-style classifier for 32x32x3 images (CIFAR-sized, NHWC)."""

        @nn.compact
        def __call__(self, x: Any, train: bool) -> Any:
            for ch in (16, 32, 64):
                x = nn.Conv(ch, (3, 3), padding=1)(x)
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
                x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
            x = nn.relu(nn.Dense(256)(x.reshape((x.shape[0], -1))))
            return nn.Dense(10)(nn.Dropout(0.1, deterministic=not train)(x))

    class Block(nn.Module):
        """A pre-norm transformer encoder layer (as ``norm_first=True`` in PyTorch)."""

        d: int

        @nn.compact
        def __call__(self, h: Any, mask: Any, train: bool) -> Any:
            a = nn.LayerNorm()(h)
            a = nn.MultiHeadDotProductAttention(num_heads=4, dropout_rate=0.1,
                                                deterministic=not train)(a, a, mask=mask)
            h = h + nn.Dropout(0.1, deterministic=not train)(a)
            f = nn.relu(nn.Dense(4 * self.d)(nn.LayerNorm()(h)))
            f = nn.Dense(self.d)(nn.Dropout(0.1, deterministic=not train)(f))
            return h + nn.Dropout(0.1, deterministic=not train)(f)

    class TinyGPT(nn.Module):
        """A 4-layer causal transformer language model."""

        vocab: int = 1000
        d: int = 128
        layers: int = 4
        ctx: int = 64

        @nn.compact
        def __call__(self, idx: Any, train: bool) -> Any:
            import jax.numpy as jnp

            h = nn.Embed(self.vocab, self.d)(idx) + nn.Embed(self.ctx, self.d)(
                jnp.arange(idx.shape[1]))
            mask = nn.make_causal_mask(idx)
            for _ in range(self.layers):
                h = Block(self.d)(h, mask, train)
            return nn.Dense(self.vocab)(nn.LayerNorm()(h))

    class MLP(nn.Module):
        """A tabular MLP with BatchNorm and dropout."""

        width: int = 512
        depth: int = 4

        @nn.compact
        def __call__(self, x: Any, train: bool) -> Any:
            for _ in range(self.depth):
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(
                    nn.Dense(self.width)(x))
                x = nn.Dropout(0.1, deterministic=not train)(nn.relu(x))
            return nn.Dense(2)(x)

    return {"cnn": CNN, "lm": TinyGPT, "mlp": MLP}


def _data(name: str) -> tuple[Any, Any]:
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    if name == "cnn":
        return (jnp.asarray(rng.normal(size=(32, 32, 32, 3)).astype(np.float32)),
                jnp.asarray(rng.integers(0, 10, 32).astype(np.int32)))
    if name == "lm":
        data = rng.integers(0, 1000, (16, 65)).astype(np.int32)
        return jnp.asarray(data[:, :-1]), jnp.asarray(data[:, 1:])
    if name == "mlp":
        return (jnp.asarray(rng.normal(size=(512, 256)).astype(np.float32)),
                jnp.asarray(rng.integers(0, 2, 512).astype(np.int32)))
    raise SystemExit(f"unknown workload {name!r} (cnn, lm, mlp)")


def _optimizer(name: str, schedule: bool) -> Any:
    """The PyTorch side's optimizer, after ``clip_grad_norm_(…, 1.0)``; with ``schedule``
    the learning rate decays like ``StepLR(step_size=10, gamma=0.9)``."""
    import optax

    base = {"cnn": 0.05, "lm": 3e-4, "mlp": 1e-3}[name]
    lr = optax.exponential_decay(base, 10, 0.9, staircase=True) if schedule else base
    clip = optax.clip_by_global_norm(1.0)
    if name == "cnn":  # torch's weight decay is added to the gradient before momentum
        return optax.chain(clip, optax.add_decayed_weights(5e-4), optax.sgd(lr, momentum=0.9))
    if name == "lm":
        return optax.chain(clip, optax.adamw(lr, weight_decay=0.1))
    return optax.chain(clip, optax.adam(lr))


def setup(name: str, schedule: bool = False) -> tuple[Any, Any, Any, Any]:
    """``(state, train_step, eval_step, key)``: ``train_step(state, x, y, key)`` returns
    ``(state, loss)``, ``eval_step(state, x, y)`` the loss with dropout off and BatchNorm's
    running statistics; both jitted. The batch is ``BATCH[name]`` (fixed, like PyTorch's)."""
    import jax
    import optax
    from flax.training import train_state

    class TrainState(train_state.TrainState):
        batch_stats: Any = None

    model = _models()[name]()
    x, y = BATCH[name] = _data(name)
    key, init_key = jax.random.split(jax.random.PRNGKey(0))
    variables = model.init(init_key, x, train=False)
    state = TrainState.create(apply_fn=model.apply, params=variables["params"],
                              batch_stats=variables.get("batch_stats"),
                              tx=_optimizer(name, schedule))
    has_bn = "batch_stats" in variables

    def loss_of(logits: Any, labels: Any) -> Any:
        logits = logits.reshape((-1, logits.shape[-1]))
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels.reshape(-1)).mean()

    @jax.jit
    def train_step(state: Any, x: Any, y: Any, key: Any) -> tuple[Any, Any]:
        def loss_fn(params: Any) -> tuple[Any, Any]:
            v = {"params": params, **({"batch_stats": state.batch_stats} if has_bn else {})}
            if has_bn:
                logits, upd = state.apply_fn(v, x, train=True, rngs={"dropout": key},
                                             mutable=["batch_stats"])
                return loss_of(logits, y), upd["batch_stats"]
            return loss_of(state.apply_fn(v, x, train=True, rngs={"dropout": key}), y), None

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads=grads)
        return (state.replace(batch_stats=stats) if has_bn else state), loss

    @jax.jit
    def eval_step(state: Any, x: Any, y: Any) -> Any:
        v = {"params": state.params, **({"batch_stats": state.batch_stats} if has_bn else {})}
        return loss_of(state.apply_fn(v, x, train=False), y)

    return state, train_step, eval_step, key


BATCH: dict[str, tuple[Any, Any]] = {}


def n_params(state: Any) -> int:
    import jax

    return sum(int(p.size) for p in jax.tree_util.tree_leaves(state.params))


class Timer:
    """Per step: wall, process-CPU and this thread's CPU seconds."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.i = warmup, 0
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.thread: list[float] = []
        self._mark()

    def _mark(self) -> None:
        self.t0, self.c0, self.h0 = time.perf_counter(), time.process_time(), time.thread_time()

    def step_done(self) -> None:
        if self.i >= self.warmup:
            self.times.append(time.perf_counter() - self.t0)
            self.cpu.append(time.process_time() - self.c0)
            self.thread.append(time.thread_time() - self.h0)
        self.i += 1
        self._mark()

    def report(self, **extra: Any) -> str:
        return json.dumps({**extra, "times": self.times, "cpu": self.cpu,
                           "thread": self.thread})


def main() -> None:
    name, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    limit_threads(sys.argv)
    import jax

    state, train_step, _eval, key = setup(name)
    x, y = BATCH[name]
    timer = Timer(warmup)
    loss = None
    for _ in range(warmup + steps):
        key, sub = jax.random.split(key)
        state, loss = train_step(state, x, y, sub)
        jax.block_until_ready((state, loss))
        timer.step_done()
    print(timer.report(workload=name, params=n_params(state), loss=float(loss)))


if __name__ == "__main__":
    main()
