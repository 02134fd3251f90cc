"""Online checking inside a traced program: one line per new violation, violations.jsonl,
warn/raise/stop, the plan, the follower. The program drives a synthetic adapter through the
real session, in a subprocess started by ``traincheck run``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_check_support import equal_invariant, step_invariant

from traincheck_core.events import Footer
from traincheck_core.invariants import write_invariants
from traincheck_core.trace import TraceFile, trace_files

HERE = str(Path(__file__).parent)
PLUGIN = ("-p", "test_check_support:PLUGIN")

TRAIN = """
import sys, time
import traincheck_core as tc
from test_check_support import FakeAdapter

frozen = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "-" else None
delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
s = tc.get_session()
loss = 10.0

def on_step(step):
    global loss
    loss = loss * 0.9 + step  # the "training" whose result must not change
    print(f"step {step} done", flush=True)
    time.sleep(delay)

if s is None:  # plain python: the same loop, nothing observed
    for step in range(6):
        on_step(step)
else:
    adapter = FakeAdapter(lambda ev: s.emit(ev), s.now, s.next_call_id, set_meta=s.set_meta)
    adapter.run(6, frozen, on_step=on_step)
    print("plan", s.plan.full, s.plan.apis, s.plan.variables)
print(f"loss {loss:.6f}")
"""


@pytest.fixture
def setup(runner):
    runner.script("train.py", TRAIN)
    write_invariants(runner.path / "inv.jsonl", [step_invariant(), equal_invariant(world=1)])
    return runner


def tc_run(runner, *args, **kw):
    return runner.traincheck("run", *PLUGIN, "-o", "out", "-i", "inv.jsonl", *args,
                             env={"PYTHONPATH": HERE}, **kw)


def violations(runner):
    path = runner.path / "out" / "violations.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_warn_reports_first_violation_once_and_training_result_unchanged(setup) -> None:
    plain = setup.python("train.py", "3", env={"PYTHONPATH": HERE})
    res = tc_run(setup, "train.py", "3")
    assert res.returncode == 0, res.stderr
    lines = [x for x in res.stderr.splitlines() if "VIOLATION at" in x]
    assert len(lines) == 1, res.stderr  # repeats at steps 4 and 5 are counted, not printed
    assert lines[0].startswith("traincheck: VIOLATION at step 3 [test.step_changes-")
    assert "model.w2" in lines[0] and "hint: parameters frozen by mistake" in lines[0]
    assert "at train.py:42" in lines[0]
    # the training computes exactly what it computes without traincheck
    assert [x for x in res.stdout.splitlines() if not x.startswith("plan")] == \
        plain.stdout.splitlines()
    assert [(v["step"], v["relation"]) for v in violations(setup)] == \
        [(3, "test.step_changes"), (4, "test.step_changes"), (5, "test.step_changes")]
    assert "2 repeated violations counted, not printed" in res.stderr
    assert "VIOLATIONS FOUND" in res.stderr  # the end-of-run table of `traincheck run`
    assert list((setup.path / "out").glob("checkresult-*.json"))


def test_plan_compiled_from_invariants(setup) -> None:
    res = tc_run(setup, "train.py", "-")
    assert res.returncode == 0, res.stderr
    assert "plan False ['opt.step'] ['model.w1', 'model.w2']" in res.stdout
    assert "VIOLATION at" not in res.stderr
    assert "no violations" in res.stderr


def test_per_process_summary_only_from_processes_that_checked_something(setup) -> None:
    # a parent that only starts the training process (as mp.spawn and launchers do): its own
    # "0 held, N never triggered" line would read as if the run had checked nothing
    setup.script("parent.py", """
        import subprocess, sys
        subprocess.run([sys.executable, "train.py"], check=True)
    """)
    res = setup.traincheck("run", *PLUGIN, "-o", "out", "-i", "inv.jsonl", "parent.py",
                           env={"PYTHONPATH": HERE})
    assert res.returncode == 0, res.stderr
    lines = [x for x in res.stderr.splitlines() if x.startswith("traincheck: checked")]
    assert len(lines) == 1 and "0 held" not in lines[0], res.stderr
    assert "no violations" in res.stderr  # the merged summary of the run follows


def test_raise_stops_the_loop_with_a_clear_exception(setup) -> None:
    res = tc_run(setup, "--on-violation", "raise", "train.py", "3")
    assert res.returncode == 1
    assert "step 2 done" in res.stdout and "step 3 done" not in res.stdout
    assert "traincheck_core.errors.ViolationError: traincheck: VIOLATION at step 3" in res.stderr
    assert len(violations(setup)) == 1


def test_stop_flushes_and_exits_nonzero(setup) -> None:
    res = tc_run(setup, "--on-violation", "stop", "train.py", "3")
    assert res.returncode == 3
    assert "stopping training (--on-violation stop) at step 3" in res.stderr
    assert "step 3 done" not in res.stdout
    (f,) = trace_files(setup.path / "out")
    events = TraceFile(f).read_all()
    assert isinstance(events[-1], Footer) and events[-1].reason == "violation"
    assert len(violations(setup)) == 1


def test_malformed_invariants_file_is_a_clear_error(setup) -> None:
    (setup.path / "inv.jsonl").write_text('{"traincheck_invariants": 1}\nnot json\n')
    res = tc_run(setup, "train.py")
    assert res.returncode == 2
    assert "inv.jsonl:2: malformed invariant" in res.stderr
    assert "step 0 done" not in res.stdout  # the program never started


def test_report_of_online_run(setup) -> None:
    tc_run(setup, "train.py", "2")
    res = setup.traincheck("report", "out", "-i", "inv.jsonl", "-o", "r.html",
                           env={"PYTHONPATH": HERE})
    assert res.returncode == 1, res.stderr
    assert "opt.step() changes model.w1, model.w2" in res.stdout
    page = (setup.path / "r.html").read_text()
    assert "4 violation(s) in 4 step(s)" in page and "<svg" in page


def test_follower_checks_a_run_that_is_still_writing(setup) -> None:
    env = {"PYTHONPATH": HERE}
    writer = subprocess.Popen(
        [sys.executable, "-m", "traincheck_core", "run", *PLUGIN, "-o", "out", "train.py", "2",
         "0.3"], cwd=setup.path, env={**_env(), **env}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        res = setup.traincheck("check", "out", "-i", "inv.jsonl", *PLUGIN, "--follow",
                               "--idle-timeout", "20", env=env, timeout=60)
    finally:
        writer.communicate(timeout=60)
    assert res.returncode == 1, res.stderr
    live = [x for x in res.stderr.splitlines() if "VIOLATION at step 2" in x]
    assert len(live) == 1
    assert "VIOLATIONS FOUND" in res.stdout


def _env():
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}
