"""A small, real training job for the quick start: a CNN classifier on synthetic images.

``--bug frozen`` reproduces a classic silent bug: the classifier head is frozen by mistake
(``requires_grad=False`` left over from a fine-tuning recipe), so the optimizer silently never
updates it; the loss still goes down a little, so nothing looks wrong.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        # no bias before a batch norm (standard practice): BN subtracts the batch mean, so that
        # bias gets a (numerically) zero gradient and never trains
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(16 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(self.drop(x.flatten(1)))


def make_data(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # Each class is a different bright quadrant plus noise: learnable in a few steps.
    y = torch.randint(0, 4, (n,), generator=gen)
    x = torch.randn(n, 1, 16, 16, generator=gen)
    for i, c in enumerate(y.tolist()):
        r, k = divmod(c, 2)
        x[i, 0, r * 8:(r + 1) * 8, k * 8:(k + 1) * 8] += 0.4
    return x, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--bug", choices=["none", "frozen"], default="none")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = SmallCNN()
    if args.bug == "frozen":
        for p in model.fc.parameters():
            p.requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x_val, y_val = make_data(64, gen)
    for step in range(args.steps):
        x, y = make_data(32, gen)
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if (step + 1) % 10 == 0:
            model.eval()
            with torch.no_grad():
                acc = (model(x_val).argmax(1) == y_val).float().mean().item()
            print(f"step {step + 1}: loss {loss.item():.3f} val acc {acc:.2f}")


if __name__ == "__main__":
    main()
