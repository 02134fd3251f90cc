"""The checking benchmark's training loop for the JAX models (``loop.py``'s JAX twin). Run as:

    python loop_jax.py {cnn,lm,mlp} STEPS WARMUP [THREADS]

The models of ``benchmarks/collection/workloads_jax.py`` in the loop ``loop.py`` runs for
PyTorch: a jitted train step with dropout on (``train=True``: the train flag), a fresh dropout
key split every step, global-norm gradient clipping, a learning rate that decays like
``StepLR(step_size=10, gamma=0.9)`` (an Optax schedule); every ``EVAL_EVERY`` steps a jitted
evaluation with dropout off and BatchNorm's running statistics (``train=False``); every
``CKPT_EVERY`` steps a checkpoint of the whole train state (parameters, optimizer state,
BatchNorm statistics) with ``flax.serialization.to_bytes``, into memory. Prints one JSON line
like ``loop.py``: wall-clock, process-CPU and training-thread-CPU seconds of every timed
iteration (evaluation and checkpoint included; an iteration ends when its results are ready).
THREADS > 0 confines the process to that many cores, as in ``workloads_jax.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "collection"))
from workloads_jax import BATCH, Timer, limit_threads, n_params, setup  # noqa: E402

EVAL_EVERY = 5
CKPT_EVERY = 10


def main() -> None:
    name, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    limit_threads(sys.argv)
    import jax
    from flax import serialization

    state, train_step, eval_step, key = setup(name, schedule=True)
    x, y = BATCH[name]
    timer = Timer(warmup)
    loss = None
    for i in range(warmup + steps):
        key, sub = jax.random.split(key)
        state, loss = train_step(state, x, y, sub)
        if i % EVAL_EVERY == EVAL_EVERY - 1:
            loss = (loss, eval_step(state, x, y))
        if i % CKPT_EVERY == CKPT_EVERY - 1:  # checkpoint (to memory: no disk noise)
            serialization.to_bytes(state)
        jax.block_until_ready((state, loss))
        timer.step_done()
    print(timer.report(workload=name, params=n_params(state)))


if __name__ == "__main__":
    main()
