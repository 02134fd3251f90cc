"""Encoder/decoder MLP trained with per-group Adam, checkpointed half-way and resumed.

Silent-bug benchmark `ckpt_optimizer_param_order` (see README.md). Synthetic data, CPU, seeded.
"""
import argparse
import io

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
    # every layer is h x h (the 4 classes are the first logits), so the two groups line up
    # shape for shape -- which is exactly why loading mismatched state raises no error
    def __init__(self, h=32):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(h, h, bias=False), nn.Tanh(), nn.Linear(h, h, bias=False))
        self.dec = nn.Sequential(nn.Tanh(), nn.Linear(h, h, bias=False), nn.Tanh(),
                                 nn.Linear(h, h, bias=False))

    def forward(self, x):
        return self.dec(self.enc(x))


def save_checkpoint(model, opt):
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    return buf


def train(model, opt, data, first, last):
    for step in range(first, last):
        xb, yb = next(data)
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == last - 1:
            print(f"step {step} loss {loss.item():.4f}")


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = make_data(gen, d=32)
    data = batches(x, y, 32, gen)
    half = args.steps // 2
    model = Net()
    opt = torch.optim.Adam([{"params": model.enc.parameters(), "lr": 1e-3},
                            {"params": model.dec.parameters(), "lr": 3e-3}])
    train(model, opt, data, 0, half)
    ckpt = torch.load(save_checkpoint(model, opt))

    # --- resume (in real life: a new process, after a refactor of the optimizer setup) ---
    model = Net()
    model.load_state_dict(ckpt["model"])
    opt = torch.optim.Adam([{"params": model.dec.parameters(), "lr": 3e-3},
                            {"params": model.enc.parameters(), "lr": 1e-3}])
    opt.load_state_dict(ckpt["opt"])
    train(model, opt, data, half, args.steps)


if __name__ == "__main__":
    main()
