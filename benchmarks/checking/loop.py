"""The checking benchmark's training loop around the collection workloads' models. Run as:

    python loop.py {cnn,lm,mlp} STEPS WARMUP [THREADS]

A realistic loop, richer than a bare step so the invariants cover more of training:
``model.train()``, ``zero_grad``, forward, loss, ``backward``, gradient clipping, optimizer
step, learning-rate scheduler step, every ``EVAL_EVERY`` steps an evaluation forward under
``model.eval()`` + ``no_grad``, every ``CKPT_EVERY`` steps a checkpoint (``torch.save`` of the
model's and optimizer's ``state_dict``, into memory). Prints one JSON line: the wall-clock
seconds (``times``), process CPU seconds of all threads (``cpu``) and the training thread's
CPU seconds (``thread``) of every timed iteration (evaluation and checkpoint included) after
WARMUP iterations. THREADS sets torch's intra-op
threads and confines the training thread to the first THREADS cores (0 or absent: torch's
default, one thread per core, any core).
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "collection"))
from workloads import setup  # noqa: E402

EVAL_EVERY = 5
CKPT_EVERY = 10


def main() -> None:
    name, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    if threads > 0:
        torch.set_num_threads(threads)
        cores = sorted(os.sched_getaffinity(0))
        if threads < len(cores):  # compute on the first THREADS cores, as loop_jax.py does
            os.sched_setaffinity(0, cores[:threads])
    torch.manual_seed(0)
    model, opt, loss_fn = setup(name)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.9)
    times, cpu, thread = [], [], []
    loss = torch.tensor(0.0)
    for i in range(warmup + steps):
        t0, c0, h0 = time.perf_counter(), time.process_time(), time.thread_time()
        model.train()
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if i % EVAL_EVERY == EVAL_EVERY - 1:
            model.eval()
            with torch.no_grad():
                loss_fn()
        if i % CKPT_EVERY == CKPT_EVERY - 1:  # checkpoint (to memory: no disk noise)
            torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, io.BytesIO())
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            thread.append(time.thread_time() - h0)
    print(json.dumps({"workload": name, "times": times, "cpu": cpu, "thread": thread,
                      "loss": float(loss.detach())}))


if __name__ == "__main__":
    main()
