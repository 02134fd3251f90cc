"""A tiny real training job with switchable silent bugs, for the checking end-to-end tests.

Iteration ``k`` evaluates first (``model.eval()`` + ``no_grad``), then trains one step; the
optimizer step that ends iteration ``k`` moves traincheck's ``step`` from ``k`` to ``k + 1``, so
a bug switched on ``--at K`` must be reported at step ``K``.

Bugs (from iteration ``--at`` on):
  frozen        the head's parameters get ``requires_grad=False`` (a fine-tuning recipe gone wrong)
  no_zero_grad  ``optimizer.zero_grad()`` is no longer called: gradients accumulate
  no_eval       evaluation runs without ``model.eval()`` (dropout and batch-norm stay in training)

Prints the final loss with ``repr`` and saves the final ``state_dict`` with ``--save``.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(16, 3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--bug", choices=["none", "frozen", "no_zero_grad", "no_eval"],
                    default="none")
    ap.add_argument("--at", type=int, default=3, help="first iteration with the bug")
    ap.add_argument("--save", default="", help="save the final state_dict here")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x_val = torch.randn(16, 8, generator=gen)
    loss = torch.tensor(0.0)
    for it in range(args.steps):
        print(f"iteration {it}", flush=True)
        bug = args.bug if it >= args.at else "none"
        if bug != "no_eval":
            model.eval()
        with torch.no_grad():
            model(x_val).argmax(1)
        if bug == "frozen":
            for p in model[4].parameters():
                p.requires_grad_(False)
        model.train()
        x = torch.randn(32, 8, generator=gen)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
        if bug != "no_zero_grad":
            opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    print("final loss", repr(loss.item()))
    if args.save:
        torch.save(model.state_dict(), args.save)


if __name__ == "__main__":
    main()
