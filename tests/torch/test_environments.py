"""DDP (torchrun and mp.spawn), DataLoader workers, autocast, torch.compile, several models and
optimizers, bit-identical results, fail-open and reversible instrumentation."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from conftest import load_run, traced

pytestmark = pytest.mark.torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DDP_BODY = """
import os, sys, torch, torch.nn as nn, torch.nn.functional as F
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

def train(rank, world):
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    model = DDP(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(rank)
    for _ in range(3):
        x, y = torch.randn(16, 8, generator=g), torch.randint(0, 2, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    dist.destroy_process_group()
"""

TORCHRUN = DDP_BODY + """
train(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
"""

SPAWN = DDP_BODY + """
def main(rank, world):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", sys.argv[1]
    train(rank, world)

if __name__ == "__main__":
    import torch.multiprocessing as mp
    mp.spawn(main, args=(2,), nprocs=2)
"""


def _check_ddp(procs):
    ranks = [p for p in procs if p.calls("torch.optim.Optimizer.step")]
    assert len(ranks) == 2
    assert sorted(p.last_meta()["rank"] for p in ranks) == [0, 1]
    assert all(p.last_meta()["world_size"] == 2 for p in ranks)
    finals = []
    for p in ranks:
        steps = p.calls("torch.optim.Optimizer.step")
        assert len(steps) == 3 and all(m["rank"] in (0, 1) for _, m in steps)
        changed = p.vars_of_call(steps[-1][0].id)
        assert set(changed) == {"model.0.weight", "model.0.bias", "model.2.weight",
                                "model.2.bias"}  # the DDP wrapper is not in the name
        last = {s.name: s.attrs for s in p.states()}
        finals.append(last)
    # replicas agree: equal parameters and (all-reduced) gradients on both ranks
    for name in ("model.0.weight", "model.2.bias"):
        assert finals[0][name]["data"] == finals[1][name]["data"]
        assert finals[0][name]["grad"] == finals[1][name]["grad"]


@pytest.mark.multiproc
def test_ddp_torchrun_two_ranks(runner):
    port = str(_free_port())
    runner.script("ddp.py", TORCHRUN)
    res = runner.traincheck("run", "-q", "-o", "out", "--plugin", "torch", "-m",
                            "torch.distributed.run", "--nproc_per_node=2",
                            "--master_addr=127.0.0.1", f"--master_port={port}", "ddp.py",
                            timeout=240)
    assert res.returncode == 0, res.stderr
    _check_ddp(load_run(runner.path / "out"))


@pytest.mark.multiproc
def test_ddp_mp_spawn_two_ranks(runner):
    procs = traced(runner, "spawn.py", SPAWN, str(_free_port()))
    _check_ddp(procs)


LOADER = """
import torch, torch.nn as nn, torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
ds = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
loader = DataLoader(ds, batch_size=16, num_workers=2, shuffle=True)
net = nn.Linear(4, 2)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
for epoch in range(2):
    for x, y in loader:
        opt.zero_grad(); F.cross_entropy(net(x), y).backward(); opt.step()
"""


def test_dataloader_workers_and_epochs(runner):
    procs = traced(runner, "loader.py", LOADER)
    main = [p for p in procs if p.calls("torch.optim.Optimizer.step")]
    assert len(main) == 1 and len(procs) >= 3  # forked workers got their own traces
    steps = main[0].calls("torch.optim.Optimizer.step")
    assert len(steps) == 8
    assert [m["epoch"] for _, m in steps] == [0] * 4 + [1] * 4
    assert [m["step"] for _, m in steps] == list(range(8))


MIXED = """
import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
gen, disc = nn.Linear(4, 8), nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
g_opt = torch.optim.Adam(gen.parameters(), 1e-3)
d_opt = torch.optim.SGD(disc.parameters(), 1e-2)
fast = torch.compile(disc, backend="eager")
for i in range(3):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = gen(torch.randn(8, 4))
        d_loss = fast(fake.detach()).float().mean()
    d_opt.zero_grad(); d_loss.backward(); d_opt.step()
    g_loss = -disc(gen(torch.randn(8, 4))).mean()
    g_opt.zero_grad(); g_loss.backward(); g_opt.step()
"""


def test_several_models_optimizers_autocast_compile(runner):
    [proc] = traced(runner, "gan.py", MIXED)
    names = {s.name for s in proc.states()}
    assert {"gen.weight", "disc.0.weight", "g_opt.state.gen.weight.exp_avg"} <= names
    steps = proc.calls("torch.optim.Optimizer.step")
    assert [c.args["self"].attrs["name"].v for c, _ in steps] == ["d_opt", "g_opt"] * 3
    # step is the most steps any one optimizer took: it advances once per iteration, right
    # after the first optimizer of the iteration stepped
    assert [m["step"] for _, m in steps] == [0, 1, 1, 2, 2, 3]
    assert proc.last_meta()["step"] == 3
    fwd = [(c, m) for c, m in proc.calls("torch.nn.Module.forward") if c.parent == 0]
    assert any(m.get("autocast") == "bfloat16" for _, m in fwd)
    assert fwd[-1][1].get("autocast") is None
    assert len(proc.calls("torch.compile")) == 1
    d_step = steps[0][0]
    assert set(proc.vars_of_call(d_step.id)) >= {"disc.0.weight", "disc.2.bias"}


BIT = """
import sys, torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                      nn.Dropout(0.2), nn.Linear(4 * 10 * 10, 10))
opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
X, Y = torch.randn(32, 1, 12, 12), torch.randint(0, 10, (32,))
for _ in range(5):
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(X), Y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
    opt.step()
torch.save(model.state_dict(), sys.argv[1])
"""


def test_results_bit_identical_with_tracing(runner):
    traced(runner, "bit.py", BIT, "traced.pt")
    plain = runner.python("bit.py", "plain.pt")
    assert plain.returncode == 0, plain.stderr
    check = runner.python("-c", "import torch; a, b = torch.load('traced.pt'), "
                          "torch.load('plain.pt'); "
                          "assert all(torch.equal(a[k], b[k]) for k in a), 'differ'; print('ok')")
    assert check.stdout.strip() == "ok", check.stderr


def test_fail_open_probe_error_never_reaches_training(runner):
    body = """
    import torch, traincheck_torch
    from traincheck_torch import variables
    def boom(*a, **k):
        raise RuntimeError("injected")
    variables.fingerprint = boom   # every observation now fails inside traincheck
    m = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(m.parameters(), 0.1)
    for _ in range(3):
        opt.zero_grad(); m(torch.ones(2, 3)).sum().backward(); opt.step()
    print("trained", float(m.weight.sum()))
    """
    runner.script("boom.py", body)
    res = runner.traincheck("run", "-o", "out", "--plugin", "torch", "boom.py")
    assert res.returncode == 0 and "trained" in res.stdout, res.stderr
    assert res.stderr.count("injected") >= 1
    assert "torch.optim.Optimizer.step" in res.stderr  # which probe went off, said once
    assert res.stderr.count("'torch.optim.Optimizer.step' failed") == 1


def test_uninstrument_restores_torch():
    code = """
import torch, traincheck_core
from traincheck_torch.instrumentor import TorchInstrumentor
from traincheck_core import Config, start_session
import tempfile
before = (torch.nn.Module.train, torch.Tensor.backward, torch.nn.init.normal_,
          torch.optim.Optimizer.zero_grad, dict(torch.nn.modules.module._global_forward_hooks))
s = start_session(Config(output=tempfile.mkdtemp(), plugins=["torch"]), export_env=False)
assert torch.nn.Module.train is not before[0]
import traincheck_torch
traincheck_torch.get_instrumentor().instrument(s, s.plan)  # idempotent
s.close()
after = (torch.nn.Module.train, torch.Tensor.backward, torch.nn.init.normal_,
         torch.optim.Optimizer.zero_grad, dict(torch.nn.modules.module._global_forward_hooks))
assert before == after, (before, after)
import importlib
assert not importlib.import_module("torch.optim.optimizer")._global_optimizer_pre_hooks
print("restored")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.stdout.strip() == "restored", res.stderr


USER_PKG = {
    "mylib/__init__.py": """
        from .train import fit

        def helper(x):
            return x * 2
        """,
    "mylib/train.py": """
        import torch

        class Trainer:
            def __init__(self, model, opt):
                self.model, self.opt = model, opt

            def train_step(self, x):
                self.opt.zero_grad()
                loss = self.model(x).sum()
                loss.backward()
                self.opt.step()
                return loss.item()

        def fit(model, opt, steps):
            t = Trainer(model, opt)
            return [t.train_step(torch.ones(2, 3)) for _ in range(steps)]
        """,
}
USER_MAIN = """
import torch, mylib
model = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(model.parameters(), 0.1)
mylib.fit(model, opt, 2)
print(mylib.helper(21))
"""


def test_user_functions_and_methods_by_option(runner):
    (runner.path / "mylib").mkdir()
    for name, body in USER_PKG.items():
        runner.script(name, body)
    procs = traced(runner, "main.py", USER_MAIN, timeout=120)
    [proc] = procs
    assert not proc.calls("mylib.helper")  # nothing of the user's is traced unless asked
    runner.script("main.py", USER_MAIN)
    res = runner.traincheck("run", "-q", "-o", "out2", "--plugin", "torch",
                            "--torch-instrument", "mylib", "main.py", timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "42", res.stderr
    [proc] = load_run(runner.path / "out2")
    top = [c.api for c, _ in proc.events if type(c).__name__ == "CallStart" and c.parent == 0
           and c.api.startswith("mylib")]
    # the package's re-export of a submodule function is traced under its home module
    assert top == ["mylib.train.fit", "mylib.helper"]
    [(fit, _)] = proc.calls("mylib.train.fit")
    assert fit.args["2"].v == 2
    steps = proc.calls("mylib.train.Trainer.train_step")
    assert len(steps) == 2 and all(c.parent == fit.id for c, _ in steps)
    # torch calls inside the user's method are its children, with their variable changes
    for call, _ in steps:
        kids = [c for c, _ in proc.events if type(c).__name__ == "CallStart"
                and c.parent == call.id]
        assert [c.api for c in kids] == ["torch.optim.Optimizer.zero_grad",
                                         "torch.nn.Module.forward", "torch.Tensor.backward",
                                         "torch.optim.Optimizer.step"]
        assert set(proc.vars_of_call(kids[-1].id)) == {"model.weight", "model.bias"}
    assert not proc.calls("mylib.train.Trainer.__init__")  # private names are left out
    bad = runner.traincheck("run", "-o", "out3", "--plugin", "torch", "--torch-instrument",
                            "my-lib", "main.py")
    assert bad.returncode == 2 and "not a module name" in bad.stderr


def test_apis_command_lists_catalog_of_installed_torch(runner):
    import json

    import torch

    res = runner.traincheck("apis", "--plugin", "torch", "--json", timeout=120)
    assert res.returncode == 0, res.stderr
    apis = json.loads(res.stdout)["torch"]
    assert apis == sorted(apis)
    assert {"torch.nn.Module.forward", "torch.optim.Optimizer.step",
            "torch.optim.Optimizer.zero_grad", "torch.Tensor.backward",
            "torch.nn.utils.clip_grad_norm_", "torch.distributed.all_reduce",
            "torch.utils.data.DataLoader.__iter__", "torch.compile"} <= set(apis)
    # init functions come from introspecting the installed torch, not from a hand list
    inits = {f"torch.nn.init.{n}" for n in vars(torch.nn.init)
             if n.endswith("_") and not n.startswith("_") and callable(getattr(torch.nn.init, n))}
    assert inits and inits <= set(apis)
    text = runner.traincheck("apis", "--plugin", "torch", timeout=120)
    assert text.stdout.startswith(f"# torch ({len(apis)} APIs)")


COMPILED_STEP = """
import sys, torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.Adam(model.parameters(), 1e-2)
cmodel = torch.compile(model, backend="aot_eager")

@torch.compile(backend="aot_eager")   # the optimizer step itself is compiled too
def opt_step():
    opt.step()

x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
for i in range(3):
    opt.zero_grad()
    F.cross_entropy(cmodel(x), y).backward()
    opt_step()
torch.save(model.state_dict(), sys.argv[1])
"""


def test_compiled_model_and_step_never_crash_and_stay_bit_identical(runner):
    """AOTAutograd compiles forward, backward and the optimizer step: tracing must neither
    break compilation nor change the result; the eager parts stay observed."""
    [proc] = traced(runner, "compiled.py", COMPILED_STEP, "traced.pt")
    assert len(proc.calls("torch.compile")) >= 2  # the decorator form calls it twice
    assert len(proc.calls("torch.optim.Optimizer.zero_grad")) == 3
    backs = proc.calls("torch.Tensor.backward")
    assert len(backs) == 3 and all("model.0.weight" in proc.vars_of_call(c.id) for c, _ in backs)
    starts = {e.id for e, _ in proc.events if type(e).__name__ == "CallStart"}
    assert starts == set(proc.returns())  # no call traced halfway inside a compiled region
    plain = runner.python("compiled.py", "plain.pt", timeout=240)
    assert plain.returncode == 0, plain.stderr
    check = runner.python("-c", "import torch; a, b = torch.load('traced.pt'), "
                          "torch.load('plain.pt'); "
                          "assert all(torch.equal(a[k], b[k]) for k in a), 'differ'; print('ok')")
    assert check.stdout.strip() == "ok", check.stderr
