"""Online checking with a plan that asks for content (fingerprints) only where invariants
compare it gives the verdicts of a full trace.

``programs/train_adam_clip.py`` (Adam, gradient clipping, batch norm) is traced fully once;
invariants are inferred from it. Each buggy variant then runs twice: checked online (the
reduced plan: gradients fingerprinted once per step, at its end; presence-only values where no
invariant compares content) and traced fully, checked offline. Both must report the same
invariants violated, first at the same steps.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_run

from traincheck_core import CallStart, VarState

pytestmark = pytest.mark.torch

PROGRAM = str(Path(__file__).parent / "programs" / "train_adam_clip.py")
STEP = "torch.optim.Optimizer.step"
AT = 3
SET = "<set>"


def tc(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}
    return subprocess.run([sys.executable, "-m", "traincheck_core", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=240, env=env)


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("plan_content")
    res = tc(d, "run", "-q", "--plugin", "torch", "-o", "healthy", PROGRAM, "--seed", "0")
    assert res.returncode == 0, res.stderr
    res = tc(d, "infer", "healthy", "-o", "inv.jsonl")
    assert res.returncode == 0, res.stderr
    return d, d / "inv.jsonl"


def online(d: Path, inv: Path, out: str, *args: str) -> set[tuple[str, int]]:
    """(invariant id, first step) of every invariant violated in a checked run."""
    res = tc(d, "run", "-q", "--plugin", "torch", "-o", out, "--invariants", str(inv), PROGRAM,
             *args)
    assert res.returncode == 0, res.stderr
    first: dict[str, int] = {}
    text = (d / out / "violations.jsonl").read_text()
    for v in (json.loads(x) for x in text.splitlines() if x.strip()):
        first[v["invariant"]] = min(v["step"], first.get(v["invariant"], v["step"]))
    return set(first.items())


def offline_full(d: Path, inv: Path, out: str, *args: str) -> set[tuple[str, int]]:
    """The same for a fully traced run of the same program, checked offline."""
    res = tc(d, "run", "-q", "--plugin", "torch", "-o", out, PROGRAM, *args)
    assert res.returncode == 0, res.stderr
    chk = tc(d, "check", out, "-i", str(inv), "--json")
    assert chk.returncode in (0, 1), chk.stderr
    outcomes = json.loads(chk.stdout)["outcomes"]
    return {(o["id"], o["first_step"]) for o in outcomes if o["status"] == "violated"}


@pytest.mark.parametrize("bug", ["frozen", "no_zero_grad", "missing_param"])
def test_reduced_plan_reports_what_a_full_trace_does(ref, bug):
    d, inv = ref
    args = ("--seed", "1", "--bug", bug, "--at", str(AT))
    got = online(d, inv, f"online-{bug}", *args)
    want = offline_full(d, inv, f"full-{bug}", *args)
    assert got, f"{bug}: nothing reported online"
    assert got == want
    steps = {step for _, step in got}
    if bug == "missing_param":  # from the first step on
        assert min(steps) == 0
    else:  # at the trigger step ("every A is followed by B" names the A just before it)
        assert AT in steps and min(steps) >= AT - 1


def test_healthy_run_is_clean_and_gradients_are_fingerprinted_once_per_step(ref):
    d, inv = ref
    assert online(d, inv, "online-healthy", "--seed", "1") == set()
    (proc,) = load_run(d / "online-healthy")
    steps = {e.id for e, _ in proc.events if isinstance(e, CallStart) and e.api == STEP}
    grads = [e for e in proc.states() if e.name.startswith("model.") and e.attrs["is_param"]]
    # backward sets the gradients (presence is all "backward sets grad" needs) ...
    assert any(e.attrs["grad"] == SET for e in grads)
    # ... and the only gradient fingerprints come with the optimizer steps, where steps end
    fingerprinted = [e for e in grads if e.attrs["grad"] not in (None, SET)]
    assert fingerprinted and all(e.call in steps for e in fingerprinted)
    # the full trace of the reference run has real fingerprints after backward
    (full,) = load_run(d / "healthy")
    assert not any(isinstance(e, VarState) and e.attrs.get("grad") == SET
                   for e, _ in full.events)
