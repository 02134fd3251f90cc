"""Noisy-input augmentation done in the Dataset with a NumPy Generator; DataLoader with 2 workers.

Silent-bug benchmark `dataloader_worker_rng` (see README.md). Synthetic data, CPU, seeded.
"""
import argparse

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, get_worker_info


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



class NoisyDataset(Dataset):
    """Adds Gaussian input noise (data augmentation) drawn from the dataset's own Generator."""

    def __init__(self, x, y, seed):
        self.x, self.y = x, y
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        noise = torch.from_numpy(self.rng.normal(0.0, 0.3, self.x.shape[1]).astype("float32"))
        return self.x[i] + noise, self.y[i]


def seed_worker(worker_id):
    # Each worker gets a copy of the dataset; give every copy its own stream.
    info = get_worker_info()
    info.dataset.rng = np.random.default_rng(info.seed)


class Net(nn.Module):
    def __init__(self, d=16, h=32, classes=4):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.head = nn.Linear(h, classes)

    def forward(self, x):
        return self.head(self.encoder(x))


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = make_data(gen, n=512)
    ds = NoisyDataset(x, y, args.seed)
    loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=2, generator=gen,
                        worker_init_fn=seed_worker)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    step = 0
    while step < args.steps:
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            if step % 10 == 0 or step == args.steps - 1:
                print(f"step {step} loss {loss.item():.4f}")
            step += 1
            if step == args.steps:
                break


if __name__ == "__main__":
    main()
