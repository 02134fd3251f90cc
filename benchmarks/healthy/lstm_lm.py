"""Healthy: LSTM language model on a synthetic token stream (truncated BPTT, grad clipping)."""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=40)
    return p.parse_args()


def make_stream(gen, n=20000, vocab=32):
    """A first-order Markov chain with a sparse random transition table: learnable structure."""
    logits = torch.randn(vocab, vocab, generator=gen) * 3
    probs = F.softmax(logits, dim=1)
    toks = torch.empty(n, dtype=torch.long)
    toks[0] = 0
    draws = torch.rand(n, generator=gen)
    cdf = probs.cumsum(1)
    for i in range(1, n):
        toks[i] = min(int(torch.searchsorted(cdf[toks[i - 1]], draws[i])), vocab - 1)
    return toks


class LM(nn.Module):
    def __init__(self, vocab=32, emb=32, hidden=64):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        h, state = self.lstm(self.emb(x), state)
        return self.out(self.drop(h)), state


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    stream = make_stream(gen)
    bs, bptt = 16, 20
    data = stream[: len(stream) // bs * bs].view(bs, -1)
    model = LM()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    state, pos = None, 0
    for step in range(args.steps):
        if pos + bptt + 1 > data.size(1):
            state, pos = None, 0
        x, y = data[:, pos:pos + bptt], data[:, pos + 1:pos + bptt + 1]
        pos += bptt
        if state is not None:
            state = tuple(s.detach() for s in state)  # truncated backprop through time
        opt.zero_grad()
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} ppl {loss.exp().item():.2f}")


if __name__ == "__main__":
    main()
