"""Regression MLP switched to float64 for numerically sensitive targets.

Silent-bug benchmark `optimizer_before_double` (see README.md). Synthetic data, CPU, seeded.
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
    def __init__(self, d=16, h=32):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh())
        self.out = nn.Linear(h, 1)

    def forward(self, x):
        return self.out(self.body(x)).squeeze(-1)


def main():
    args = parse_args()
    # Module conversions create new Parameter objects (the behaviour of torch < 0.4 and of
    # XLA tensors; set globally by some libraries through this flag).
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x, _ = make_data(gen)
    y = torch.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2]
    x, y = x.double(), y.double()
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.double()
    data = batches(x, y, 32, gen)
    for step in range(args.steps):
        xb, yb = next(data)
        opt.zero_grad()
        loss = F.mse_loss(model(xb), yb)
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
