"""Healthy: variational autoencoder (reparameterisation trick, KL warm-up) on synthetic
8x8 'stroke' images."""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=40)
    return p.parse_args()


def make_images(gen, n=512):
    """Binary 8x8 images with one horizontal and one vertical stroke at random positions."""
    x = torch.zeros(n, 8, 8)
    rows = torch.randint(0, 8, (n,), generator=gen)
    cols = torch.randint(0, 8, (n,), generator=gen)
    x[torch.arange(n), rows, :] = 1.0
    x[torch.arange(n), :, cols] = 1.0
    return x.view(n, 64)


class VAE(nn.Module):
    def __init__(self, d=64, h=64, z=4):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d, h), nn.ReLU())
        self.mu = nn.Linear(h, z)
        self.logvar = nn.Linear(h, z)
        self.dec = nn.Sequential(nn.Linear(z, h), nn.ReLU(), nn.Linear(h, d))

    def forward(self, x):
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.dec(z), mu, logvar


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x = make_images(gen)
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(args.steps):
        xb = x[torch.randint(0, len(x), (64,), generator=gen)]
        opt.zero_grad()
        logits, mu, logvar = model(xb)
        rec = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum") / len(xb)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(xb)
        beta = min(1.0, step / 20)  # KL warm-up
        loss = rec + beta * kl
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} rec {rec.item():.3f} kl {kl.item():.3f}")


if __name__ == "__main__":
    main()
