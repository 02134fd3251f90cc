"""Healthy: mixed precision on CPU -- bfloat16 autocast for the forward pass, GradScaler,
unscale before clipping, fp32 master weights; a residual MLP classifier."""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=40)
    return p.parse_args()


def make_data(gen, n=1024, d=32, classes=8):
    x = torch.randn(n, d, generator=gen)
    w = torch.randn(d, classes, generator=gen)
    return x, (torch.tanh(x) @ w).argmax(1)


class ResMLP(nn.Module):
    def __init__(self, d=32, h=64, classes=8, blocks=2):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(h), nn.Linear(h, h), nn.GELU(), nn.Linear(h, h))
            for _ in range(blocks))
        self.out = nn.Linear(h, classes)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return self.out(h)


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = make_data(gen)
    model = ResMLP()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    scaler = torch.amp.GradScaler("cpu")
    for step in range(args.steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x[idx])
        loss = F.cross_entropy(logits.float(), y[idx])
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} scale {scaler.get_scale():.0f}")


if __name__ == "__main__":
    main()
