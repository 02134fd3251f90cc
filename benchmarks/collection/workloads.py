"""Training workloads for the collection benchmark. Run as a script:

    python workloads.py {cnn,lm,mlp} STEPS WARMUP [THREADS]

Prints one JSON line: the wall-clock and CPU seconds of every timed training step (after WARMUP
steps). THREADS (default 1) is torch's intra-op thread count: on a small shared machine a single
thread keeps OpenMP's spinning threads from turning other processes' load into noise.
Each workload is a realistic CPU-sized training loop: DataLoader-free synthetic batches,
forward, loss, backward, (clipping,) optimizer step, zero_grad.
"""

from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CNN(nn.Module):
    """A small VGG-style classifier for 3x32x32 images (CIFAR-sized)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 16, 256), nn.ReLU(),
                                  nn.Dropout(0.1), nn.Linear(256, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TinyGPT(nn.Module):
    """A 4-layer causal transformer language model."""

    def __init__(self, vocab: int = 1000, d: int = 128, layers: int = 4, ctx: int = 64) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.1, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        h = self.tok(idx) + self.pos(torch.arange(t))
        return self.head(self.ln(self.blocks(h, mask=mask, is_causal=True)))


class MLP(nn.Module):
    """A tabular MLP with BatchNorm and dropout."""

    def __init__(self, d_in: int = 256, width: int = 512, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(d_in if i == 0 else width, width), nn.BatchNorm1d(width),
                       nn.ReLU(), nn.Dropout(0.1)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


def setup(name: str):
    g = torch.Generator().manual_seed(0)
    if name == "cnn":
        model = CNN()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        x, y = torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)
        return model, opt, lambda: F.cross_entropy(model(x), y)
    if name == "lm":
        model = TinyGPT()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
        data = torch.randint(0, 1000, (16, 65), generator=g)
        return model, opt, lambda: F.cross_entropy(model(data[:, :-1]).reshape(-1, 1000),
                                                   data[:, 1:].reshape(-1))
    if name == "mlp":
        model = MLP()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, y = torch.randn(512, 256, generator=g), torch.randint(0, 2, (512,), generator=g)
        return model, opt, lambda: F.cross_entropy(model(x), y)
    raise SystemExit(f"unknown workload {name!r} (cnn, lm, mlp)")


def main() -> None:
    name, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    torch.manual_seed(0)
    model, opt, loss_fn = setup(name)
    model.train()
    times, cpu = [], []
    for i in range(warmup + steps):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"workload": name, "times": times, "cpu": cpu, "params": n_params,
                      "loss": float(loss.detach())}))


if __name__ == "__main__":
    main()
