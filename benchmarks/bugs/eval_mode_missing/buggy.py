"""MLP with BatchNorm and Dropout, validated every 10 steps.

Silent-bug benchmark `eval_mode_missing` (see README.md). Synthetic data, CPU, seeded.
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
    def __init__(self, d=16, h=64, classes=4):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Dropout(0.3),
                                  nn.Linear(h, h), nn.ReLU(), nn.Dropout(0.3))
        self.head = nn.Linear(h, classes)

    def forward(self, x):
        return self.head(self.body(x))


def evaluate(model, xv, yv):
    with torch.no_grad():
        acc = (model(xv).argmax(1) == yv).float().mean().item()
    return acc


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = make_data(gen)
    xv, yv = x[-256:], y[-256:]
    x, y = x[:-256], y[:-256]
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = batches(x, y, 32, gen)
    model.train()
    for step in range(args.steps):
        xb, yb = next(data)
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        if (step + 1) % 10 == 0:
            acc = evaluate(model, xv, yv)
            print(f"step {step} loss {loss.item():.4f} val_acc {acc:.3f}")


if __name__ == "__main__":
    main()
