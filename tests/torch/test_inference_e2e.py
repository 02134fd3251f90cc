"""End to end: `traincheck infer` on real PyTorch runs (a small CNN, a 2-rank DDP job).

The invariants the issue names must come out in readable form; inference is reproducible;
several reference runs are counted; identity fields never reach a precondition; a healthy
rerun with another seed checks clean.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from traincheck_core.preconditions import is_identity

pytestmark = pytest.mark.torch

CNN = """
import sys, torch, torch.nn as nn, torch.nn.functional as F

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        # a conv bias right before a batch norm: its gradient is numerically zero, so SGD may
        # leave it bit-identical on some steps (inference must cope, real models do this)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(4 * 4 * 4, 3)
        # a frozen parameter (as in fine-tuning): it has no gradient and never changes
        self.scale = nn.Parameter(torch.full((1,), 0.5), requires_grad=False)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x * self.scale))), 2)
        return self.fc(self.drop(x.flatten(1)))

seed = int(sys.argv[1])
torch.manual_seed(seed)
g = torch.Generator().manual_seed(seed)
model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
xv, yv = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
for step in range(9):
    x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
    model.train()
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    if (step + 1) % 3 == 0:
        model.eval()
        with torch.no_grad():
            for i in range(2):
                model(xv[i * 8:(i + 1) * 8])
"""

DDP = """
import os, torch, torch.nn as nn, torch.nn.functional as F
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
dist.init_process_group("gloo", rank=rank, world_size=world)
torch.manual_seed(0)
model = DDP(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
g = torch.Generator().manual_seed(rank)  # each rank its own data
for _ in range(4):
    x, y = torch.randn(16, 8, generator=g), torch.randint(0, 2, (16,), generator=g)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
dist.destroy_process_group()
"""


class Runner:
    """Like the ``runner`` fixture, for module-scoped fixtures (record once, infer often)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def script(self, name: str, body: str) -> None:
        (self.path / name).write_text(textwrap.dedent(body))

    def traincheck(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}
        return subprocess.run([sys.executable, "-m", "traincheck_core", *args], cwd=self.path,
                              capture_output=True, text=True, timeout=timeout, env=env)


def _record(r: Runner, out: str, *args: str) -> None:
    res = r.traincheck("run", "-q", "-o", out, "--plugin", "torch", *args, timeout=300)
    assert res.returncode == 0, res.stderr


def _infer(r: Runner, out: str, *traces: str, jobs: int = 2) -> list[dict]:
    res = r.traincheck("infer", *traces, "-o", out, "-j", str(jobs), timeout=300)
    assert res.returncode == 0, res.stderr
    lines = (r.path / out).read_text().splitlines()
    assert json.loads(lines[0])["traincheck_invariants"] == 1
    return [json.loads(x) for x in lines[1:]]


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> Runner:
    """Two healthy reference runs (seeds 0 and 1) of the CNN."""
    r = Runner(tmp_path_factory.mktemp("cnn"))
    r.script("cnn.py", CNN)
    _record(r, "run0", "cnn.py", "0")
    _record(r, "run1", "cnn.py", "1")
    return r


def _texts(invs: list[dict]) -> list[str]:
    return [i["text"] for i in invs]


def _one(invs: list[dict], pattern: str) -> dict:
    found = [i for i in invs if re.search(pattern, i["text"])]
    assert found, f"no invariant matches {pattern!r}; have:\n" + "\n".join(_texts(invs))
    return found[0]


STEP_CHANGES = (r"^Optimizer\.step changes the value \(`data`\) of every Parameter when it has "
                r"a gradient")
ZERO_GRAD = r"^Optimizer\.zero_grad resets the gradient of every Parameter to None"
EVAL_FIRST = (r"^Module\.eval\(\) precedes every Module\.forward\(\) call in the same step/stage "
              r"when stage = 'eval'")


def test_healthy_run_gives_the_headline_invariants(cnn):
    invs = _infer(cnn, "inv0.jsonl", "run0")
    step = _one(invs, STEP_CHANGES)
    assert step["relation"] == "EventContain"
    assert {"model.bn.bias", "model.conv.weight"} <= set(_covered(step))
    assert "model.scale" not in step["text"]  # frozen: no gradient, not covered
    _one(invs, ZERO_GRAD)
    _one(invs, EVAL_FIRST)
    # setup calls (weight init, building the optimizer) happen once: no rules about them
    assert not [t for t in _texts(invs) if "init." in t or "__init__" in t]


def _covered(inv: dict) -> list[str]:
    m = re.search(r"\(([^()]*)\)$", inv["text"])
    return [n.strip() for n in m.group(1).split(",")] if m else []


def test_identity_fields_never_in_preconditions(cnn):
    invs = _infer(cnn, "inv_both.jsonl", "run0", "run1")
    fields = {c["field"] for i in invs for conj in i.get("precondition", {}).get("any_of", [])
              for c in conj}
    assert fields, "expected some preconditions"
    assert not [f for f in fields if is_identity(f)]


def test_same_traces_give_byte_identical_files_and_ids(cnn):
    _infer(cnn, "a.jsonl", "run0", "run1", jobs=2)
    _infer(cnn, "b.jsonl", "run1", "run0", jobs=1)
    a, b = (cnn.path / "a.jsonl").read_bytes(), (cnn.path / "b.jsonl").read_bytes()
    assert a == b
    # the same invariant inferred from one run keeps its id
    alone = {i["text"].split(" (")[0]: i["id"] for i in _infer(cnn, "c.jsonl", "run0")}
    both = {i["text"].split(" (")[0]: i["id"] for i in _infer(cnn, "d.jsonl", "run0", "run1")}
    head = _one(_infer(cnn, "c.jsonl", "run0"), STEP_CHANGES)["text"].split(" (")[0]
    assert alone[head] == both[head]


def test_several_reference_runs_are_counted(cnn):
    invs = _infer(cnn, "inv_both.jsonl", "run0", "run1")
    one = _infer(cnn, "inv0.jsonl", "run0")
    step = _one(invs, STEP_CHANGES)
    assert step["support"]["runs"] == 2 and len(step["runs"]) == 2
    assert step["support"]["positive"] > _one(one, STEP_CHANGES)["support"]["positive"]
    assert step["frameworks"]["torch"] and step["frameworks"]["torch"][0].startswith("2.")


def test_healthy_rerun_with_another_seed_checks_clean(cnn):
    _infer(cnn, "inv0.jsonl", "run0")
    res = cnn.traincheck("check", "run1", "-i", "inv0.jsonl", timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.multiproc
def test_ddp_replicated_parameters_equal_across_ranks(tmp_path):
    runner = Runner(tmp_path)
    runner.script("ddp.py", DDP)
    _record(runner, "ddp", "-m", "torch.distributed.run", "--nproc_per_node=2",
            "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "ddp.py")
    for rank in (0, 1):  # (the torchrun launcher is traced too, without a rank)
        assert len(list(Path(runner.path / "ddp").glob(f"trace-r{rank}-*.tctrace"))) == 1
    invs = _infer(runner, "ddp.jsonl", "ddp")
    inv = _one(invs, r"^replicated variables have equal `data` across ranks at every step")
    assert inv["relation"] == "Consistency"
    assert inv["params"] == {"attr": "data", "across": "ranks", "pair_by": "step,name"}
    assert {"model.0.bias", "model.0.weight"} <= set(_covered(inv))
    # every step end of both ranks paired, 4 parameters each; the other negatives are the
    # optimizer's hyper-parameters, which have no `data`
    assert inv["support"]["positive"] >= 16
    assert inv["precondition"] == {"any_of": [[{"field": "var.data", "kind": "present"}]]}
