"""Healthy: small CNN classifier (conv + BatchNorm + pooling) on synthetic 1x16x16 images."""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=40)
    return p.parse_args()


def make_images(gen, n=512, classes=4):
    """Each class is a blurred blob in one image quadrant, plus noise."""
    y = torch.randint(0, classes, (n,), generator=gen)
    x = torch.randn(n, 1, 16, 16, generator=gen)
    for c in range(classes):
        r, q = divmod(c, 2)
        x[y == c, :, r * 8 + 2:r * 8 + 6, q * 8 + 2:q * 8 + 6] += 0.5
    return x, y


class CNN(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4 * 4, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.flatten(1))


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = make_images(gen)
    xv, yv = make_images(gen, n=128)
    model = CNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    for step in range(args.steps):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        if (step + 1) % 10 == 0 or step == args.steps - 1:
            model.eval()
            with torch.no_grad():
                acc = (model(xv).argmax(1) == yv).float().mean().item()
            print(f"step {step} loss {loss.item():.4f} val_acc {acc:.3f}")


if __name__ == "__main__":
    main()
