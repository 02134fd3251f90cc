"""Healthy: DistributedDataParallel (2 ranks, gloo on 127.0.0.1, started with
torch.multiprocessing.spawn) training a BatchNorm MLP with a DistributedSampler; rank 0 logs."""
import argparse
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

WORLD = 2


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=30)
    return p.parse_args()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_data(gen, n=1024, d=16, classes=4):
    x = torch.randn(n, d, generator=gen)
    w = torch.randn(d, classes, generator=gen)
    return x, (x @ w).argmax(1)


def worker(rank, args, port):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.manual_seed(args.seed)
    ds = TensorDataset(*make_data(torch.Generator().manual_seed(args.seed)))
    sampler = DistributedSampler(ds, num_replicas=WORLD, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(ds, batch_size=32, sampler=sampler)
    net = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
    model = DDP(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    step, epoch = 0, 0
    while step < args.steps:
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            if rank == 0 and (step % 10 == 0 or step == args.steps - 1):
                print(f"step {step} loss {loss.item():.4f}")
            step += 1
            if step == args.steps:
                break
        epoch += 1
    dist.destroy_process_group()


def main():
    args = parse_args()
    mp.spawn(worker, args=(args, free_port()), nprocs=WORLD, join=True)


if __name__ == "__main__":
    main()
