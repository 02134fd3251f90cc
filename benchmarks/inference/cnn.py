"""The benchmark's reference workload: a small CNN classifier on synthetic images (CPU).

``--steps`` sets the trace length; ``--blocks`` the depth (conv + batch norm blocks), which
sets the number of variables traced per step. Evaluates every 20 steps, as a real loop would.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, blocks: int, width: int = 8, classes: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for _ in range(blocks):
            layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU()]
            cin = width
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(width * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 4)
        return self.fc(self.drop(x.flatten(1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = SmallCNN(args.blocks)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    xv = torch.randn(32, 1, 16, 16, generator=gen)
    for step in range(args.steps):
        x = torch.randn(16, 1, 16, 16, generator=gen)
        y = torch.randint(0, 4, (16,), generator=gen)
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if (step + 1) % 20 == 0:
            model.eval()
            with torch.no_grad():
                model(xv)


if __name__ == "__main__":
    main()
