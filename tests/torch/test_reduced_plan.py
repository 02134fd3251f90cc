"""Online checking with a plan that asks for content (fingerprints) only where invariants
compare it gives the verdicts of a full trace.

``programs/train_adam_clip.py`` (Adam, gradient clipping, batch norm) is traced fully once;
invariants are inferred from it. Each buggy variant then runs twice: checked online (the
reduced plan: gradients fingerprinted once per step, at its end; presence-only values where no
invariant compares content; change tokens for optimizer state whose invariants only ask whether
it changed) and traced fully, checked offline. Both must report the same invariants violated,
first at the same steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import load_run, tc, trace_and_infer
from traincheck_torch.fingerprint import fingerprint
from traincheck_torch.variables import ALL, DATA, GRAD, Content

from traincheck_core import CallStart, TensorSummary, VarState
from traincheck_core.check.online import load_all
from traincheck_core.check.plan import compile_plan, load_relations
from traincheck_core.session import ContentRule, InstrumentationPlan

pytestmark = pytest.mark.torch

PROGRAM = str(Path(__file__).parent / "programs" / "train_adam_clip.py")
STEP = "torch.optim.Optimizer.step"
AT = 3
SET = "<set>"  # what a fingerprint attribute holds when only its presence is needed


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> tuple[Path, Path]:
    return trace_and_infer(tmp_path_factory.mktemp("plan_content"), PROGRAM)


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


@pytest.mark.parametrize("bug", ["frozen", "no_zero_grad", "missing_param", "zero_loss"])
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
    elif bug == "zero_loss":  # the second all-zero gradient is the first that did not change
        assert min(steps) == AT + 1
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
    # small tensor arguments (the loss, the clipped norm) are fingerprinted in the full trace;
    # online only for APIs whose argument fingerprints a deployed invariant compares
    plan = compile_plan(load_all([str(inv)]), load_relations(["torch"]))
    assert any(_fingerprinted(e) for e, _ in full.events if isinstance(e, CallStart))
    assert all(plan.wants_arg_content(e.api) for e, _ in proc.events
               if isinstance(e, CallStart) and _fingerprinted(e))


def _fingerprinted(call: CallStart) -> bool:
    return any(isinstance(a, TensorSummary) and a.fp is not None for a in call.args.values())


def _content(*rules):
    return Content(InstrumentationPlan(full=False, variables=["*"], content=list(rules)))


def test_content_modes_never_go_down_and_presence_is_exact():
    c = _content(ContentRule(attr="data", where={"dtype": ["float32"], "is_param": [False]}))
    t = torch.ones(4)
    a = c.attrs("w", t, None, ALL, False, False)
    assert a["data"] == fingerprint(t)
    t.data = t.data.double()  # no longer matches the rule: still fingerprinted
    t.add_(1)
    b = c.attrs("w", t, a, DATA, False, False)
    assert b["data"] == fingerprint(t) != a["data"] and b["dtype"] == "float64"
    # a variable no rule covers records only that its data and gradient are set
    p = torch.nn.Parameter(torch.ones(3))
    assert c.attrs("p", p, None, ALL, True, False)["grad"] is None
    p.grad = torch.ones(3)
    got = c.attrs("p", p, None, GRAD, True, False)
    assert got["grad"] == SET and got["data"] == SET


def test_step_end_content_is_owed_until_the_step_ends_and_follows_replaced_tensors():
    c = _content(ContentRule(attr="grad", where={"is_param": [True]}, step_end=True))
    p = torch.nn.Parameter(torch.ones(3))
    first = c.attrs("p", p, None, ALL, True, False)  # first sight: computed at once
    p.grad = torch.full((3,), 2.0)
    mid = c.attrs("p", p, first, GRAD, True, False)
    assert mid["grad"] == SET and c.pending["p"][0] is p  # owed at the step's end
    p.grad.mul_(0.5)  # e.g. clipping: nothing new to record before the step ends
    assert c.attrs("p", p, mid, GRAD, True, False) == mid
    end = c.attrs("p", p, mid, c.take_pending()["p"][2], True, True)
    assert end["grad"] == fingerprint(p.grad) and not c.pending
    # the name is taken by another tensor before the step ends: the old one is not owed
    p.grad = torch.ones(3)
    c.attrs("p", p, end, GRAD, True, False)
    q = torch.nn.Parameter(torch.zeros(3))
    c.attrs("p", q, None, ALL, True, False)
    assert "p" not in c.pending


def test_optimizer_state_gets_change_tokens_unless_exact_content_is_asked(ref):
    d, inv = ref

    def state_values(out: str, *opts: str) -> list:
        res = tc(d, "run", "-q", "--plugin", "torch", *opts, "-o", out, "--invariants",
                 str(inv), PROGRAM, "--seed", "2", "--steps", "8")
        assert res.returncode == 0, res.stderr
        (proc,) = load_run(d / out)
        return [e.attrs["data"] for e in proc.states() if ".state." in e.name]

    tokens = state_values("online-tokens")
    # the Adam state is hashed while its writes are being proven counted, then tokened
    assert any(isinstance(v, str) and v.startswith("w") for v in tokens)
    exact = state_values("online-exact", "--torch-exact-content")
    assert exact and not any(isinstance(v, str) and v.startswith("w") for v in exact)
