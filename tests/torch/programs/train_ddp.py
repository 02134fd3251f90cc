"""A tiny DistributedDataParallel job (start with ``torchrun --nproc_per_node=2``, gloo on
127.0.0.1) with a switchable silent bug, for the checking end-to-end tests.

``--bug diverge``: from iteration ``--at`` on, rank 1 nudges one weight between ``backward()``
and ``optimizer.step()`` (think of a rank-dependent code path or a stray in-place update). DDP
all-reduces gradients, not weights, so nothing re-synchronizes the replicas: they silently differ
from the step that ends iteration ``--at``, i.e. traincheck's step ``--at``.
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--bug", choices=["none", "diverge"], default="none")
    ap.add_argument("--at", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(args.seed)  # same initial weights on every rank
    gen = torch.Generator().manual_seed(args.seed * 100 + rank)  # each rank its own data
    model = DDP(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for it in range(args.steps):
        print(f"rank {rank} iteration {it}", flush=True)
        x = torch.randn(16, 8, generator=gen)
        y = (x[:, 0] > 0).long()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if args.bug == "diverge" and it >= args.at and rank == 1:
            with torch.no_grad():
                model.module[0].weight[0, 0] += 0.01
        opt.step()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
