"""DDP classifier (2 ranks): per-rank seeds for augmentation, custom init of the head.

Silent-bug benchmark `ddp_reinit_after_wrap` (see README.md). 2 ranks (gloo, 127.0.0.1) started with
torch.multiprocessing.spawn, so `python healthy.py` is enough. Synthetic data, CPU, seeded.
"""
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


def parse_args(steps=30):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=steps)
    return p.parse_args()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_data(gen, n=1024, d=16, classes=4):
    x = torch.randn(n, d, generator=gen)
    w = torch.randn(d, classes, generator=gen)
    return x, (x @ w).argmax(1)


def setup(rank, port):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)


class Net(nn.Module):
    def __init__(self, d=16, h=32, classes=4):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.head = nn.Linear(h, classes)

    def forward(self, x):
        return self.head(self.encoder(x))


def init_head(net):
    nn.init.xavier_normal_(net.head.weight)
    nn.init.zeros_(net.head.bias)


def worker(rank, args, port):
    setup(rank, port)
    gen = torch.Generator().manual_seed(args.seed)
    ds = TensorDataset(*make_data(gen))
    torch.manual_seed(args.seed + rank)  # per-rank seed: different input noise on each rank
    sampler = DistributedSampler(ds, num_replicas=WORLD, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(ds, batch_size=32, sampler=sampler)
    net = Net()
    init_head(net)
    model = DDP(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    step, epoch = 0, 0
    while step < args.steps:
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            xb = xb + 0.1 * torch.randn_like(xb)
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
