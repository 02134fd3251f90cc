"""MLP classifier in CPU bfloat16 autocast with a GradScaler and gradient clipping.

Silent-bug benchmark `amp_clip_before_unscale` (see README.md). Synthetic data, CPU, seeded.
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
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu")
    data = batches(x, y, 32, gen)
    for step in range(args.steps):
        xb, yb = next(data)
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
        scaler.scale(loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        scaler.step(opt)
        scaler.update()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} scale {scaler.get_scale():.0f}")


if __name__ == "__main__":
    main()
