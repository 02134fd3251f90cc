"""MLP classifier with an ExponentialLR schedule stepped once per epoch (8 batches).

Silent-bug benchmark `scheduler_per_batch` (see README.md). Synthetic data, CPU, seeded.
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_args(steps=40):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=steps)
    return p.parse_args()


def make_data(gen, n=1024, d=16, classes=4):
    x = torch.randn(n, d, generator=gen)
    w = torch.randn(d, classes, generator=gen)
    return x, (x @ w).argmax(1)


def batches(x, y, bs, gen):
    while True:
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x) - bs + 1, bs):
            idx = perm[i:i + bs]
            yield x[idx], y[idx]


class Net(nn.Module):
    def __init__(self, d=16, h=32, classes=4):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.head = nn.Linear(h, classes)

    def forward(self, x):
        return self.head(self.encoder(x))


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = make_data(gen, n=256)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.7)
    data = batches(x, y, 32, gen)
    steps_per_epoch = len(x) // 32
    step = 0
    for epoch in range((args.steps + steps_per_epoch - 1) // steps_per_epoch):
        for _ in range(steps_per_epoch):
            if step == args.steps:
                break
            xb, yb = next(data)
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            step += 1
            sched.step()
        print(f"epoch {epoch} step {step} loss {loss.item():.4f} lr {opt.param_groups[0]['lr']:.4f}")


if __name__ == "__main__":
    main()
