"""Healthy: MLP regression (MSE) on a synthetic nonlinear function, SGD+momentum, cosine LR
schedule, mini-batches from a DataLoader."""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=40)
    return p.parse_args()


def make_data(gen, n=1024, d=8):
    x = torch.randn(n, d, generator=gen)
    y = torch.sin(x[:, 0]) + x[:, 1] * x[:, 2] - 0.5 * x[:, 3] ** 2
    return x, (y + 0.05 * torch.randn(n, generator=gen)).unsqueeze(1)


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = make_data(gen)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed))
    model = nn.Sequential(nn.Linear(8, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(),
                          nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(args.steps, 1))
    step = 0
    while step < args.steps:
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.mse_loss(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
            if step % 10 == 0 or step == args.steps - 1:
                print(f"step {step} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.4f}")
            step += 1
            if step == args.steps:
                break


if __name__ == "__main__":
    main()
