"""Healthy: GAN on a 2-D ring of Gaussians; separate generator/discriminator optimizers,
discriminator trained on detached fakes, non-saturating generator loss."""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=40)
    return p.parse_args()


def real_batch(gen, n=64, modes=8):
    k = torch.randint(0, modes, (n,), generator=gen).float()
    angle = 2 * math.pi * k / modes
    centers = torch.stack([angle.cos(), angle.sin()], dim=1) * 2
    return centers + 0.05 * torch.randn(n, 2, generator=gen)


def mlp(d_in, d_out, h=64):
    return nn.Sequential(nn.Linear(d_in, h), nn.LeakyReLU(0.2), nn.Linear(h, h),
                         nn.LeakyReLU(0.2), nn.Linear(h, d_out))


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    g, d = mlp(8, 2), mlp(2, 1)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.999))
    ones, zeros = torch.ones(64, 1), torch.zeros(64, 1)
    for step in range(args.steps):
        real = real_batch(gen)
        fake = g(torch.randn(64, 8, generator=gen))
        opt_d.zero_grad()
        loss_d = (F.binary_cross_entropy_with_logits(d(real), ones)
                  + F.binary_cross_entropy_with_logits(d(fake.detach()), zeros))
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = F.binary_cross_entropy_with_logits(d(fake), ones)
        loss_g.backward()
        opt_g.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step} loss_d {loss_d.item():.4f} loss_g {loss_g.item():.4f}")


if __name__ == "__main__":
    main()
