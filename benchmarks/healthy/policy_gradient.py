"""Healthy: REINFORCE with a learned value baseline on a hand-written 1-D corridor environment."""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=40)
    return p.parse_args()


class Corridor:
    """Agent starts in the middle of a corridor of length 9; goal at the right end (+1),
    trap at the left end (-1), -0.01 per move, at most 20 moves."""

    def __init__(self, gen, length=9, horizon=20):
        self.gen, self.length, self.horizon = gen, length, horizon

    def reset(self):
        self.pos, self.t = self.length // 2, 0
        return self.obs()

    def obs(self):
        o = torch.zeros(self.length)
        o[self.pos] = 1.0
        return o

    def step(self, action):
        self.pos += 1 if action == 1 else -1
        self.t += 1
        if self.pos == self.length - 1:
            return self.obs(), 1.0, True
        if self.pos == 0:
            return self.obs(), -1.0, True
        return self.obs(), -0.01, self.t >= self.horizon


class ActorCritic(nn.Module):
    def __init__(self, d=9, h=32):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, h), nn.Tanh())
        self.pi = nn.Linear(h, 2)
        self.v = nn.Linear(h, 1)

    def forward(self, o):
        h = self.body(o)
        return self.pi(h), self.v(h).squeeze(-1)


def rollout(env, model, gen):
    obs, acts, rews = [], [], []
    o, done = env.reset(), False
    while not done:
        with torch.no_grad():
            logits, _ = model(o)
        a = int(torch.multinomial(F.softmax(logits, -1), 1, generator=gen))
        obs.append(o)
        acts.append(a)
        o, r, done = env.step(a)
        rews.append(r)
    return torch.stack(obs), torch.tensor(acts), rews


def returns(rews, gamma=0.99):
    out, g = [], 0.0
    for r in reversed(rews):
        g = r + gamma * g
        out.append(g)
    return torch.tensor(out[::-1])


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    env = Corridor(gen)
    model = ActorCritic()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(args.steps):
        episodes = [rollout(env, model, gen) for _ in range(4)]
        obs = torch.cat([e[0] for e in episodes])
        acts = torch.cat([e[1] for e in episodes])
        ret = torch.cat([returns(e[2]) for e in episodes])
        logits, values = model(obs)
        logp = F.log_softmax(logits, -1).gather(1, acts[:, None]).squeeze(1)
        adv = (ret - values).detach()
        loss = -(logp * adv).mean() + 0.5 * F.mse_loss(values, ret)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == args.steps - 1:
            mean_ret = sum(sum(e[2]) for e in episodes) / len(episodes)
            print(f"step {step} loss {loss.item():.4f} return {mean_ret:.3f}")


if __name__ == "__main__":
    main()
