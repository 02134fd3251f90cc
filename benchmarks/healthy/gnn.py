"""Healthy: 2-layer graph convolutional network with hand-written message passing
(scatter-add over an edge list) for node classification on a synthetic stochastic block model."""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=40)
    return p.parse_args()


def make_graph(gen, n=300, classes=3, p_in=0.05, p_out=0.005, d=8):
    y = torch.randint(0, classes, (n,), generator=gen)
    same = y[:, None] == y[None, :]
    prob = torch.where(same, torch.tensor(p_in), torch.tensor(p_out))
    adj = torch.rand(n, n, generator=gen) < prob
    adj = (adj | adj.T).fill_diagonal_(True)
    edges = adj.nonzero().T  # (2, E), includes self loops
    centers = torch.randn(classes, d, generator=gen)
    x = centers[y] + 3.0 * torch.randn(n, d, generator=gen)
    return x, y, edges


class GCNLayer(nn.Module):
    """h_i' = W * mean_{j in N(i)} h_j, written out as gather + index_add (message passing)."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)

    def forward(self, h, edges):
        src, dst = edges
        msg = self.lin(h)[src]
        out = torch.zeros(h.size(0), msg.size(1)).index_add_(0, dst, msg)
        deg = torch.zeros(h.size(0)).index_add_(0, dst, torch.ones(dst.numel()))
        return out / deg.clamp(min=1).unsqueeze(1)


class GCN(nn.Module):
    def __init__(self, d=8, h=16, classes=3):
        super().__init__()
        self.l1 = GCNLayer(d, h)
        self.l2 = GCNLayer(h, classes)
        self.drop = nn.Dropout(0.2)

    def forward(self, x, edges):
        return self.l2(self.drop(F.relu(self.l1(x, edges))), edges)


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x, y, edges = make_graph(gen)
    train_mask = torch.rand(len(y), generator=gen) < 0.5
    model = GCN()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    for step in range(args.steps):
        model.train()
        opt.zero_grad()
        out = model(x, edges)
        loss = F.cross_entropy(out[train_mask], y[train_mask])
        loss.backward()
        opt.step()
        if (step + 1) % 10 == 0 or step == args.steps - 1:
            model.eval()
            with torch.no_grad():
                pred = model(x, edges).argmax(1)
            acc = (pred[~train_mask] == y[~train_mask]).float().mean().item()
            print(f"step {step} loss {loss.item():.4f} test_acc {acc:.3f}")


if __name__ == "__main__":
    main()
