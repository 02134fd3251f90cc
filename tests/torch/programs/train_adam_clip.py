"""A tiny real training job (Adam, gradient clipping, batch norm) with switchable silent bugs,
for the tests of the reduced instrumentation plan (content fingerprints only where needed).

Iteration ``k`` trains one step; the optimizer step that ends iteration ``k`` moves
traincheck's ``step`` from ``k`` to ``k + 1``.

Bugs:
  frozen         from iteration ``--at`` on, the head's parameters get ``requires_grad=False``
  no_zero_grad   from iteration ``--at`` on, ``optimizer.zero_grad()`` is no longer called
  missing_param  the optimizer is built without the head's bias (from the start)
  zero_loss      from iteration ``--at`` on, the loss is multiplied by 0 (a mask or a weight
                 that went to zero): every gradient is all zeros at every step
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--bug", choices=["none", "frozen", "no_zero_grad", "missing_param",
                                          "zero_loss"],
                    default="none")
    ap.add_argument("--at", type=int, default=3, help="first iteration with the bug")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    params = [p for p in model.parameters()
              if not (args.bug == "missing_param" and p is model[3].bias)]
    opt = torch.optim.Adam(params, lr=0.01)
    loss = torch.tensor(0.0)
    for it in range(args.steps):
        bug = args.bug if it >= args.at else "none"
        if bug == "frozen":
            for p in model[3].parameters():
                p.requires_grad_(False)
        model.train()
        x = torch.randn(32, 8, generator=gen)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
        if bug != "no_zero_grad":
            opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        if bug == "zero_loss":
            loss = loss * 0.0
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    print("final loss", repr(loss.item()))


if __name__ == "__main__":
    main()
