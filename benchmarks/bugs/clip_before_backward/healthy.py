"""MLP classifier with a large learning rate kept stable by gradient-norm clipping.

Silent-bug benchmark `clip_before_backward` (see README.md). Synthetic data, CPU, seeded.
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
    x, y = make_data(gen)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    data = batches(x, y, 32, gen)
    for step in range(args.steps):
        xb, yb = next(data)
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5)
        opt.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
