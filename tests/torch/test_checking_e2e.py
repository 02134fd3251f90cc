"""Checking end to end: infer invariants from a healthy real training run, then catch silent
bugs in other runs online (inside the training process) and offline (``traincheck check``).

The programs live in ``programs/``: ``train_mlp.py`` (one process, bugs switched on at iteration
``--at``) and ``train_ddp.py`` (two ranks under torchrun). Tests assert behaviour (a violation
of the right kind at the bug's trigger step), never exact invariant ids.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import clean_env, load_run, tc, trace_and_infer

from traincheck_core import CallStart, VarState

pytestmark = pytest.mark.torch

PROGRAMS = Path(__file__).parent / "programs"
MLP = str(PROGRAMS / "train_mlp.py")
DDP = str(PROGRAMS / "train_ddp.py")
AT = 3  # the iteration (= traincheck step) at which a bug switches on
LINE = re.compile(r"^traincheck: VIOLATION at step (\d+)(?:,? rank (\d+))? \[([^\]]+)\]: (.*)$")
FORWARD = "torch.nn.Module.forward"

# What a violation of each bug must talk about (its statement, message or evidence).
KIND = {
    "frozen": "model.4.",  # the frozen head's parameters
    "no_zero_grad": "zero_grad",
    "no_eval": "eval()",
}




def violation_lines(stderr: str) -> list[tuple[int, int | None, str, str]]:
    """(step, rank, invariant id, rest of the line) of every online violation line."""
    out = []
    for line in stderr.splitlines():
        m = LINE.match(line)
        if m:
            out.append((int(m[1]), int(m[2]) if m[2] else None, m[3], m[4]))
    return out


def read_violations(run: Path) -> list[dict]:
    text = (run / "violations.jsonl").read_text()
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def statements(inv_file: Path) -> dict[str, str]:
    """Invariant id -> its JSON line (statement, parameters), to tell what a violation is about."""
    out = {}
    for line in inv_file.read_text().splitlines()[1:]:
        if line.strip():
            out[json.loads(line)["id"]] = line
    return out


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> tuple[Path, Path]:
    """(work dir, invariants file) inferred from one healthy, fully traced run (seed 0)."""
    return trace_and_infer(tmp_path_factory.mktemp("check_mlp"), MLP)


def run_online(d: Path, inv: Path, out: str, *args: str, mode: str = "warn"
               ) -> subprocess.CompletedProcess[str]:
    return tc(d, "run", "--plugin", "torch", "-o", out, "--invariants", str(inv),
              "--on-violation", mode, MLP, *args)


@pytest.mark.parametrize("bug", ["frozen", "no_zero_grad", "no_eval"])
def test_bug_reported_online_at_trigger_step_and_by_check(ref, bug):
    d, inv = ref
    out = f"bug-{bug}"
    res = run_online(d, inv, out, "--seed", "1", "--bug", bug, "--at", str(AT))
    assert res.returncode == 0, res.stderr  # warn: training went on to the end
    assert "final loss" in res.stdout
    lines = violation_lines(res.stderr)
    assert lines, res.stderr
    texts = statements(inv)
    # The first violation the user sees names the trigger step and is about the bug.
    step, rank, inv_id, rest = lines[0]
    assert step == AT, res.stderr
    about = [ln for ln in lines if ln[0] == AT and KIND[bug] in texts[ln[2]] + ln[3]]
    assert about, res.stderr
    # one readable line: what was expected, what happened, a hint
    assert "expected " in rest and "hint: " in rest and "\n" not in rest
    # Nothing before the bug: "every A is followed by B" names the step of the unanswered A,
    # which is the iteration just before the trigger.
    logged = read_violations(d / out)
    assert min(v["step"] for v in logged) >= AT - 1
    assert {v["invariant"] for v in logged} == {ln[2] for ln in lines}
    # Offline: the same trace, the same verdict, exit code 1.
    chk = tc(d, "check", out, "-i", str(inv), "--json")
    assert chk.returncode == 1, chk.stderr
    result = json.loads(chk.stdout)
    violated = [o for o in result["outcomes"] if o["status"] == "violated"]
    assert {o["id"] for o in violated} == {v["invariant"] for v in logged}
    assert min(o["first_step"] for o in violated) >= AT - 1
    assert any(o["first_step"] == AT and KIND[bug] in texts[o["id"]] for o in violated) or \
        bug == "frozen" and any(o["first_step"] == AT for o in violated)


def test_healthy_rerun_with_another_seed_has_no_violation(ref):
    d, inv = ref
    res = run_online(d, inv, "healthy-seed1", "--seed", "1")
    assert res.returncode == 0, res.stderr
    assert violation_lines(res.stderr) == []
    assert read_violations(d / "healthy-seed1") == []
    chk = tc(d, "check", "healthy-seed1", "-i", str(inv))
    assert chk.returncode == 0, chk.stdout + chk.stderr
    assert "no violations" in chk.stdout


def test_raise_stops_the_training_loop_at_the_trigger_step(ref):
    d, inv = ref
    res = run_online(d, inv, "raise", "--seed", "1", "--bug", "no_zero_grad", "--at",
                     str(AT), mode="raise")
    assert res.returncode != 0
    assert "final loss" not in res.stdout  # the loop did not finish
    iterations = re.findall(r"^iteration (\d+)$", res.stdout, re.M)
    assert iterations[-1] == str(AT)  # stopped inside the iteration that has the bug
    assert "ViolationError" in res.stderr
    (step, _, inv_id, _), *_ = violation_lines(res.stderr)
    assert step == AT
    raised = [x for x in res.stderr.splitlines() if x.startswith("traincheck_core.errors."
                                                                 "ViolationError")]
    assert raised and inv_id in raised[0], res.stderr  # the exception names the invariant


def test_warn_leaves_the_result_bit_identical(ref):
    d, inv = ref
    args = ("--seed", "1", "--bug", "frozen", "--at", str(AT))
    plain = subprocess.run([sys.executable, MLP, *args, "--save", "plain.pt"], cwd=d,
                           capture_output=True, text=True, timeout=240, env=clean_env())
    assert plain.returncode == 0, plain.stderr
    checked = run_online(d, inv, "warn", *args, "--save", "checked.pt")
    assert checked.returncode == 0, checked.stderr
    assert violation_lines(checked.stderr)  # there were violations, training went on
    final = [x for x in plain.stdout.splitlines() if x.startswith("final loss")]
    assert final and final == [x for x in checked.stdout.splitlines()
                               if x.startswith("final loss")]
    a, b = torch.load(d / "plain.pt"), torch.load(d / "checked.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_check_json_lists_never_triggered_invariants_and_why(ref):
    d, inv = ref
    # eval() is never called: invariants about it cannot trigger
    res = run_online(d, inv, "never-eval", "--seed", "1", "--bug", "no_eval", "--at", "0")
    assert res.returncode == 0, res.stderr
    chk = tc(d, "check", "never-eval", "-i", str(inv), "--json")
    assert chk.returncode == 1
    result = json.loads(chk.stdout)
    assert len(result["outcomes"]) == len(statements(inv))
    never = [o for o in result["outcomes"] if o["status"] == "not-triggered"]
    assert never and all(o["why_not"] for o in never)
    assert any(o["why_not"].startswith("API never called") and "torch.nn.Module.eval"
               in o["why_not"] for o in never)
    text = tc(d, "check", "never-eval", "-i", str(inv))
    assert "never triggered" in text.stdout and "API never called" in text.stdout


def test_report_is_self_contained_html_with_timeline_and_hints(ref):
    d, inv = ref
    res = run_online(d, inv, "report-run", "--seed", "1", "--bug", "frozen", "--at", str(AT))
    assert res.returncode == 0, res.stderr
    rep = tc(d, "report", "report-run", "-i", str(inv), "-o", "report.html")
    assert rep.returncode == 1, rep.stderr  # the run had violations
    html = (d / "report.html").read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "<script src" not in html and "<link" not in html
    assert "<svg" in html and "violations per step" in html  # the timeline
    hints = [v["hint"] for v in read_violations(d / "report-run")]
    import html as htmllib

    assert any(htmllib.escape(h) in html or h in html for h in hints)
    assert "model.4.weight" in html  # the evidence names the frozen parameters


def test_malformed_invariants_file_is_a_clear_error(ref):
    d, _ = ref
    bad = d / "bad.jsonl"
    bad.write_text('{"traincheck_invariants": 1}\n{"id": "x", "relation": \n')
    res = run_online(d, bad, "bad-run", "--seed", "1")
    assert res.returncode == 2
    assert "bad.jsonl:2" in res.stderr and "malformed" in res.stderr
    assert "Traceback" not in res.stderr
    chk = tc(d, "check", "healthy", "-i", str(bad))
    assert chk.returncode == 2
    assert "bad.jsonl:2" in chk.stderr and "Traceback" not in chk.stderr
    garbage = d / "garbage.jsonl"
    garbage.write_text("not json at all\n")
    chk = tc(d, "check", "healthy", "-i", str(garbage))
    assert chk.returncode == 2 and "not a traincheck invariants file" in chk.stderr


def test_online_mode_traces_only_what_the_invariants_need(ref):
    d, inv = ref
    full = load_run(d / "healthy")[0]
    full_events = len(full.events)
    # Only invariants about what Tensor.backward does to gradients: the forward hooks are not
    # installed; probes that keep gradient states and meta variables current still are.
    lines = inv.read_text().splitlines()
    keep = [x for x in lines[1:] if json.loads(x)["relation"] == "EventContain"
            and json.loads(x)["params"].get("api") == "torch.Tensor.backward"]
    assert keep
    subset = d / "backward-only.jsonl"
    subset.write_text("\n".join([lines[0], *keep]) + "\n")
    res = run_online(d, subset, "planned", "--seed", "0", "--bug", "frozen", "--at", str(AT))
    assert res.returncode == 0, res.stderr
    assert violation_lines(res.stderr)[0][0] == AT  # still caught at the trigger step
    planned = load_run(d / "planned")[0]
    apis = {e.api for e, _ in planned.events if isinstance(e, CallStart)}
    assert FORWARD not in apis
    assert "torch.Tensor.backward" in apis
    assert len(planned.events) < 0.7 * full_events
    # Invariants about call order only: no variable state is observed while training.
    order = [x for x in lines[1:] if json.loads(x)["relation"] == "APISequence"
             and FORWARD not in x]
    assert order
    seq = d / "order-only.jsonl"
    seq.write_text("\n".join([lines[0], *order]) + "\n")
    res = run_online(d, seq, "planned-order", "--seed", "0", "--bug", "no_zero_grad", "--at",
                     str(AT))
    assert res.returncode == 0, res.stderr
    assert violation_lines(res.stderr)[0][0] == AT
    planned = load_run(d / "planned-order")[0]
    # only the snapshot taken when the model and optimizer were first seen
    assert all(m.get("step", 0) == 0 for e, m in planned.events if isinstance(e, VarState))
    assert FORWARD not in {e.api for e, _ in planned.events if isinstance(e, CallStart)}
    assert len(planned.events) < 0.3 * full_events


# -- DDP: two ranks under torchrun -----------------------------------------------------------

def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _torchrun(*args: str) -> list[str]:
    return ["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}", DDP, *args]


@pytest.mark.multiproc
def test_ddp_replicas_diverging_is_caught_by_the_follower_and_by_check(tmp_path):
    """Replica divergence is a cross-rank relation: a rank's in-process checker sees only its
    own events, so the live report comes from whoever tails the run directory while the ranks
    write it: a separate ``traincheck check --follow``, and the ``traincheck run`` launcher
    itself (see also test_ddp_online.py)."""
    d = tmp_path
    res = tc(d, "run", "-q", "--plugin", "torch", "-o", "healthy", *_torchrun("--seed", "0"))
    assert res.returncode == 0, res.stderr
    assert tc(d, "infer", "healthy", "-o", "inv.jsonl").returncode == 0
    inv = d / "inv.jsonl"
    # The follower checks the run directory while the ranks are still writing it.
    follower = subprocess.Popen([sys.executable, "-m", "traincheck_core", "check", "--follow",
                                 "--idle-timeout", "120", "bug", "-i", str(inv), "--json"],
                                cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=clean_env())
    try:
        time.sleep(0.5)
        bug = tc(d, "run", "--plugin", "torch", "-o", "bug", "--invariants", str(inv),
                 *_torchrun("--seed", "1", "--bug", "diverge", "--at", str(AT), "--steps", "6"))
        assert bug.returncode == 0, bug.stderr
        launcher = violation_lines(bug.stderr)
        assert launcher and launcher[0][0] == AT, bug.stderr
        f_out, f_err = follower.communicate(timeout=180)
    finally:
        follower.kill()
    assert follower.returncode == 1, f_err
    live = violation_lines(f_err)
    assert live and live[0][0] == AT, f_err
    texts = statements(inv)
    assert live[0][1] is not None  # the line names a rank
    assert "across ranks" in live[0][3] or "rank" in texts[live[0][2]]
    assert "model.0.weight" in live[0][3]  # the nudged parameter, and only it
    assert "model.2.weight" not in live[0][3]
    # offline, from the finished traces: exit 1, first step = trigger step, both ranks seen
    chk = tc(d, "check", "bug", "-i", str(inv), "--json")
    assert chk.returncode == 1
    violated = [o for o in json.loads(chk.stdout)["outcomes"] if o["status"] == "violated"]
    assert violated and min(o["first_step"] for o in violated) == AT
    # a healthy rerun with another seed: no violations, online or offline
    ok = tc(d, "run", "--plugin", "torch", "-o", "ok", "--invariants", str(inv),
            *_torchrun("--seed", "1"))
    assert ok.returncode == 0 and violation_lines(ok.stderr) == [], ok.stderr
    assert tc(d, "check", "ok", "-i", str(inv)).returncode == 0
