"""``torch.nn.init.*_`` overwrite their tensor: the tensor's content before the call (often
uninitialized ``torch.empty`` memory) is not fingerprinted, so inference never learns a
relation over garbage; the content the call wrote is recorded as the variable's state."""

from __future__ import annotations

import pytest
from conftest import traced

pytestmark = pytest.mark.torch

INIT = """
import torch

torch.manual_seed(0)
model = torch.nn.Linear(8, 4)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(2):
    w = torch.empty(16, 16)
    torch.nn.init.kaiming_uniform_(w, a=0.5)
    torch.nn.init.normal_(tensor=torch.empty(4), std=0.1)
    torch.nn.init.zeros_(model.bias)
    opt.zero_grad()
    model(torch.randn(3, 8)).sum().backward()
    opt.step()
"""


def test_overwritten_tensor_has_no_fingerprint_but_its_new_content_does(runner):
    [proc] = traced(runner, "init.py", INIT)
    kaiming = proc.calls("torch.nn.init.kaiming_uniform_")  # Linear's own init, and ours
    normal = proc.calls("torch.nn.init.normal_")
    zeros = proc.calls("torch.nn.init.zeros_")
    assert len(kaiming) == 3 and len(normal) == len(zeros) == 2
    for call, _ in kaiming:
        assert call.args["0"].fp is None
    ours = [c for c, _ in kaiming if c.args["0"].shape == [16, 16]]
    assert len(ours) == 2 and all(c.args["a"].v == 0.5 for c in ours)  # others as usual
    for call, _ in normal:
        assert call.args["tensor"].fp is None
    # the bias the call wrote is a tracked variable: its new content is fingerprinted
    for call, _ in zeros:
        assert call.args["0"].fp is None
        state = proc.vars_of_call(call.id).get("model.bias")
        assert state is None or state.attrs["data"] not in (None, "<set>")
    biases = [e for e in proc.states() if e.name == "model.bias"]
    assert biases and all(len(b.attrs["data"]) == 16 for b in biases)
