"""Real training loops under ``traincheck run --plugin torch``: the events say what happened."""

from __future__ import annotations

import pytest
from conftest import traced, traced_once

pytestmark = pytest.mark.torch

CNN = """
import sys, torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3)
        self.bn1 = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 6 * 6, 32)
        self.fc2 = nn.Linear(32, 10)
        self.unused = nn.Linear(4, 4)   # never gets a gradient

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))

model = Net()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
X, Y = torch.randn(64, 1, 14, 14), torch.randint(0, 10, (64,))
accum = int(sys.argv[1]) if len(sys.argv) > 1 else 1
for it in range(4 * accum):
    loss = F.cross_entropy(model(X[it % 2::2]), Y[it % 2::2]) / accum
    loss.backward()
    if (it + 1) % accum == 0:
        optimizer.step()
        optimizer.zero_grad()
model.eval()
with torch.no_grad():
    acc = (model(X).argmax(1) == Y).float().mean()
torch.save({k: v for k, v in model.state_dict().items()}, "final.pt")
print("acc", float(acc))
"""

LM = """
import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
V, D, T = 50, 32, 16

class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.pos = nn.Parameter(torch.zeros(T, D))
        layer = nn.TransformerEncoderLayer(D, 4, 64, dropout=0.1, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(D, V)

    def forward(self, idx):
        mask = nn.Transformer.generate_square_subsequent_mask(idx.shape[1])
        return self.head(self.blocks(self.emb(idx) + self.pos, mask=mask, is_causal=True))

lm = TinyLM()
opt = torch.optim.AdamW(lm.parameters(), lr=3e-3, weight_decay=0.1)
sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
data = torch.randint(0, V, (8, T + 1))
for step in range(4):
    logits = lm(data[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, V), data[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=False)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
    opt.step()
    sched.step()
lm.eval()
with torch.no_grad():
    lm(data[:, :-1])
"""


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """One traced CNN run, shared by the tests that read different parts of it."""
    [proc] = traced_once(tmp_path_factory, "cnn.py", CNN)
    return proc


def _params_with_grad_before(proc, step_id):
    """Names of parameters whose last state before call ``step_id`` had a gradient."""
    last = {}
    for e, _ in proc.events:
        if getattr(e, "id", None) == step_id and type(e).__name__ == "CallStart":
            break
        if type(e).__name__ == "VarState" and e.attrs.get("is_param"):
            last[e.name] = e.attrs
    return {n for n, a in last.items() if a["grad"] is not None}, set(last)


def test_cnn_step_changes_exactly_params_with_grads(cnn):
    proc = cnn
    steps = proc.calls("torch.optim.Optimizer.step")
    assert len(steps) == 4
    names = {s.name for s in proc.states() if s.attrs.get("is_param")}
    assert {"model.conv1.weight", "model.fc2.bias", "model.unused.weight"} <= names
    for call, _meta in steps:
        with_grad, all_params = _params_with_grad_before(proc, call.id)
        changed = {n for n, v in proc.vars_of_call(call.id).items() if v.attrs.get("is_param")}
        assert changed == with_grad, (call.id, changed ^ with_grad)
        assert "model.unused.weight" in all_params - changed
        assert call.args["self"].type == "torch.optim.adam.Adam"
        line = 1 + [x.strip() for x in CNN.splitlines()].index("optimizer.step()")
        assert call.loc and call.loc.endswith(f"cnn.py:{line}")
    # optimizer state is tracked under the optimizer's variable name
    assert any(s.name == "optimizer.state.model.fc1.weight.exp_avg" for s in proc.states())
    # the step meta counts optimizer steps, starting at 0
    assert [m["step"] for _, m in steps] == [0, 1, 2, 3]
    assert proc.last_meta()["step"] == 4


def test_cnn_zero_grad_resets_grads_and_backward_sets_them(cnn):
    proc = cnn
    zero = proc.calls("torch.optim.Optimizer.zero_grad")
    assert len(zero) == 4
    for call, _ in zero:
        reset = proc.vars_of_call(call.id)
        assert "model.fc1.weight" in reset
        assert all(v.attrs["grad"] is None for v in reset.values())
    back = proc.calls("torch.Tensor.backward")
    got = proc.vars_of_call(back[1][0].id)
    assert got["model.fc1.weight"].attrs["grad"] is not None
    assert "model.unused.weight" not in got


def test_cnn_stage_switches_on_eval_and_buffers_tracked(cnn):
    proc = cnn
    fwd = [(c, m) for c, m in proc.calls("torch.nn.Module.forward") if c.parent == 0]
    assert [m["stage"] for _, m in fwd] == ["train"] * 4 + ["eval"]
    assert fwd[0][0].args["self"].attrs["name"].v == "model"
    ev = proc.calls("torch.nn.Module.eval")
    assert len(ev) == 1 and ev[0][0].args["self"].type == "__main__.Net"
    after = [m for e, m in proc.events if getattr(e, "id", 0) > ev[0][0].id]
    assert after and after[0]["stage"] == "eval"
    bn = [s for s in proc.states() if s.name == "model.bn1.running_mean"]
    assert len(bn) == 5  # first seen + one change per training forward
    assert not proc.calls("torch.nn.Module.train")  # eval's internal train(False) not repeated


def test_gradient_accumulation_counts_optimizer_steps(runner):
    [proc] = traced(runner, "cnn.py", CNN, "3")
    assert len(proc.calls("torch.Tensor.backward")) == 12
    steps = proc.calls("torch.optim.Optimizer.step")
    assert [m["step"] for _, m in steps] == [0, 1, 2, 3]
    assert proc.last_meta()["step"] == 4
    # each micro-batch backward accumulates into .grad: three grad changes per step
    grads = [s for s in proc.states() if s.name == "model.fc1.weight"
             and s.call in {c.id for c, _ in proc.calls("torch.Tensor.backward")}]
    assert len(grads) == 12 and len({g.attrs["grad"] for g in grads}) == 12


def test_transformer_lm(runner):
    [proc] = traced(runner, "lm.py", LM)
    steps = proc.calls("torch.optim.Optimizer.step")
    assert len(steps) == 4
    for call, _ in steps:
        with_grad, _ = _params_with_grad_before(proc, call.id)
        changed = {n for n, v in proc.vars_of_call(call.id).items() if v.attrs.get("is_param")}
        assert changed == with_grad
        assert "lm.blocks.layers.1.self_attn.in_proj_weight" in changed
        assert "lm.pos" in changed
    # zero_grad(set_to_none=False): grads become zeros, a fingerprint, not None
    z = proc.calls("torch.optim.Optimizer.zero_grad")[1][0]
    zeroed = proc.vars_of_call(z.id)
    assert zeroed and all(v.attrs["grad"] is not None for v in zeroed.values())
    # clip_grad_norm_ is traced and its effect on .grad observed; the scheduler changes lr
    clips = proc.calls("torch.nn.utils.clip_grad_norm_")
    assert len(clips) == 4
    lrs = [s.attrs["lr"] for s in proc.states() if s.name == "opt.param_groups.0"]
    assert lrs == [3e-3, 1.5e-3, 7.5e-4]
    top = [m["stage"] for c, m in proc.calls("torch.nn.Module.forward") if c.parent == 0]
    assert top == ["train"] * 4 + ["eval"]


CUSTOM_OPT = """
import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)

class SignSGD(torch.optim.Optimizer):   # defined by the user after traincheck instrumented torch
    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-g["lr"])

    def zero_grad(self, set_to_none=True):   # overrides Optimizer.zero_grad, no super() call
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

class Clearing(SignSGD):   # a subclass of the subclass, clearing through super()
    def zero_grad(self, set_to_none=True):
        super().zero_grad(set_to_none)

net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2), nn.Linear(2, 2))
head = net[3]
opt = SignSGD(list(net[0].parameters()) + list(net[2].parameters()), 0.01)
opt2 = Clearing(head.parameters(), 0.01)
x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
for _ in range(3):
    opt.zero_grad(); opt2.zero_grad()
    F.cross_entropy(net[:3](x), y).backward()   # the head gets no gradient
    opt.step(); opt2.step()
"""


def test_user_optimizer_subclass_defined_later(runner):
    [proc] = traced(runner, "custom_opt.py", CUSTOM_OPT)
    steps = proc.calls("torch.optim.Optimizer.step")
    assert [c.args["self"].type for c, _ in steps] == ["__main__.SignSGD",
                                                       "__main__.Clearing"] * 3
    for call, _ in steps[::2]:
        with_grad, _ = _params_with_grad_before(proc, call.id)
        changed = {n for n, v in proc.vars_of_call(call.id).items() if v.attrs.get("is_param")}
        assert changed == with_grad == {"net.0.weight", "net.0.bias", "net.2.weight",
                                        "net.2.bias"}
    assert all(not proc.vars_of_call(c.id) for c, _ in steps[1::2])  # head: no grad, no change
    zero = proc.calls("torch.optim.Optimizer.zero_grad")
    # both overrides are traced once per call (Clearing's super() call is not traced again)
    assert [c.args["self"].type for c, _ in zero] == ["__main__.SignSGD",
                                                      "__main__.Clearing"] * 3
    reset = proc.vars_of_call(zero[2][0].id)
    assert set(reset) == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"}
    assert all(v.attrs["grad"] is None for v in reset.values())
    assert [m["step"] for _, m in steps] == [0, 1, 1, 2, 2, 3]
