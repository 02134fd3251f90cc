"""Online checking in a separate checker process (the default with ``--on-violation warn``):
the same verdicts as checking on the training thread, raise still reaches the training loop,
and a checker process that dies or a training process that is killed harms nothing."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from test_check_online import HERE, tc_run, violations
from test_check_support import equal_invariant, step_invariant

from traincheck_core.check.channel import FrameReader, frame
from traincheck_core.invariants import write_invariants

TRAIN = """
import os, signal, sys, time
import traincheck_core as tc
from test_check_support import FakeAdapter

frozen = int(sys.argv[1]) if sys.argv[1] != "-" else None
action = sys.argv[2] if len(sys.argv) > 2 else ""
s = tc.get_session()

def checker_pids():
    me = str(os.getpid())
    out = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, IndexError):
            continue
        if ppid == me and b"traincheck_core.check.worker" in cmd:
            out.append(int(p))
    return out

def on_step(step):
    print(f"step {step} done", flush=True)
    if step == 0:
        print("checkers", checker_pids(), flush=True)
        print("niceness", [os.getpriority(os.PRIO_PROCESS, p) - os.getpriority(os.PRIO_PROCESS, 0)
                           for p in checker_pids()], flush=True)
        print("cpus", [sorted(os.sched_getaffinity(p)) for p in checker_pids()], flush=True)
    if step == 1 and action == "kill-checker":
        for pid in checker_pids():
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
    if step == 0 and action == "fork":  # like a DataLoader worker that outlives the loop
        pid = os.fork()
        if pid == 0:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1), os.dup2(null, 2)  # only the checker's pipe may keep it waiting
            time.sleep(30)
            os._exit(0)
        print("forked", pid, flush=True)
    if step == 1 and action == "stall-checker":  # a checker far behind the training
        import traincheck_core.check.remote as remote
        from traincheck_core.events import VarState
        remote.BACKLOG_LIMIT = 1 << 16
        for pid in checker_pids():
            os.kill(pid, signal.SIGSTOP)
        for i in range(30000):  # ~2 MB: more than the pipe holds
            s.emit(VarState(t=s.now(), name=f"model.extra{i}", vtype="param", attrs={}))
    if step == 1 and action == "kill-self":
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.1)  # a step of training: the checker keeps up meanwhile

adapter = FakeAdapter(lambda ev: s.emit(ev), s.now, s.next_call_id, set_meta=s.set_meta)
adapter.run(6, frozen, on_step=on_step)
print("finished", flush=True)
"""


@pytest.fixture
def setup(runner):
    runner.script("train.py", TRAIN)
    write_invariants(runner.path / "inv.jsonl", [step_invariant(), equal_invariant(world=1)])
    return runner


def _checkers(stdout: str) -> list[int]:
    (line,) = [x for x in stdout.splitlines() if x.startswith("checkers ")]
    return json.loads(line.split(" ", 1)[1])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _result(runner) -> dict:
    (f,) = (runner.path / "out").glob("checkresult-*.json")
    return json.loads(f.read_text())


def test_warn_checks_in_a_separate_process_with_the_same_verdicts(setup) -> None:
    found = {}
    for place in ("process", "inline"):
        res = tc_run(setup, "--checker", place, "train.py", "3")
        assert res.returncode == 0, res.stderr
        # the end of a healthy run is not reported as a checker failure
        assert "online checking is off" not in res.stderr, res.stderr
        assert (len(_checkers(res.stdout)) == 1) == (place == "process")
        lines = [x for x in res.stderr.splitlines() if "VIOLATION at" in x]
        assert len(lines) == 1 and lines[0].startswith("traincheck: VIOLATION at step 3 ")
        outcomes = {o["id"]: (o["status"], o["checked"], o["occurrences"], o["first_step"])
                    for o in _result(setup)["outcomes"]}
        # each line says when it was reported: after the event that showed it
        assert all(v["reported_t"] >= v["t"] > 0 for v in violations(setup))
        found[place] = ([(v["step"], v["invariant"], v["message"]) for v in violations(setup)],
                        outcomes)
        os.rename(setup.path / "out", setup.path / f"out-{place}")
    assert found["process"] == found["inline"]
    assert [s for s, _, _ in found["process"][0]] == [3, 4, 5]


def test_auto_uses_the_process_only_for_warn(setup) -> None:
    res = tc_run(setup, "train.py", "-")  # warn is the default
    assert len(_checkers(res.stdout)) == 1
    # the checker yields to training when the cores are busy
    assert "niceness [10]" in res.stdout
    res = tc_run(setup, "--on-violation", "raise", "train.py", "-")
    assert _checkers(res.stdout) == []


def test_checker_cpus_keep_the_checker_process_on_the_chosen_cores(setup) -> None:
    last = max(os.sched_getaffinity(0))
    res = tc_run(setup, "--checker-cpus", str(last), "train.py", "3")
    assert res.returncode == 0, res.stderr
    assert f"cpus [[{last}]]" in res.stdout
    assert len([x for x in res.stderr.splitlines() if "VIOLATION at" in x]) == 1
    res = tc_run(setup, "train.py", "-")  # by default: any core training may use
    assert f"cpus [{sorted(os.sched_getaffinity(0))}]" in res.stdout


@pytest.mark.parametrize("spec", ["x", "3-1", "100000"])
def test_unusable_checker_cpus_are_a_usage_error(setup, spec) -> None:
    res = tc_run(setup, "--checker-cpus", spec, "train.py", "-")
    assert res.returncode == 2
    assert "checker CPUs" in res.stderr and "Traceback" not in res.stderr
    assert "step 0 done" not in res.stdout  # the program never started


def test_raise_with_a_checker_process_reaches_the_training_loop(setup) -> None:
    res = tc_run(setup, "--checker", "process", "--on-violation", "raise", "train.py", "3")
    assert res.returncode == 1
    assert "traincheck_core.errors.ViolationError: traincheck: VIOLATION at step 3" in res.stderr
    assert "finished" not in res.stdout
    # the checker answers while step 3's on_step sleeps; the next traced call raises
    assert "step 3 done" in res.stdout and "step 5 done" not in res.stdout


def test_a_dead_checker_process_never_stops_training(setup) -> None:
    res = tc_run(setup, "train.py", "3", "kill-checker")
    assert res.returncode == 0, res.stderr
    assert "finished" in res.stdout and "step 5 done" in res.stdout
    assert "checker process" in res.stderr  # the user is told checking stopped, and why
    assert "traincheck check" in res.stderr  # ... and how to check the trace instead


def test_a_checker_far_behind_is_switched_off_and_training_goes_on(setup) -> None:
    res = tc_run(setup, "train.py", "3", "stall-checker", timeout=60)
    assert res.returncode == 0, res.stderr
    assert "finished" in res.stdout
    (pid,) = _checkers(res.stdout)
    assert not _alive(pid)  # not left behind, stopped
    assert "the checker process fell" in res.stderr and "behind the training" in res.stderr
    assert "at step 1; online checking is off" in res.stderr


def test_the_checker_process_ends_with_a_killed_training_process(setup) -> None:
    res = tc_run(setup, "train.py", "-", "kill-self")
    assert res.returncode != 0
    (pid,) = _checkers(res.stdout)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)  # end of input: it finishes on its own, no orphan left


def test_a_forked_child_does_not_keep_the_checker_waiting(setup) -> None:
    t0 = time.monotonic()
    res = tc_run(setup, "train.py", "3", "fork")
    took = time.monotonic() - t0
    (child,) = [int(x.split()[1]) for x in res.stdout.splitlines() if x.startswith("forked ")]
    os.kill(child, signal.SIGKILL)
    assert res.returncode == 0, res.stderr
    assert took < 20  # the checker saw the end of input although the child still lives
    assert [v["step"] for v in violations(setup)] == [3, 4, 5]
    assert _result(setup)["outcomes"]


def test_frames_split_anywhere_come_out_whole() -> None:
    payloads = [b"", b"a", bytes(range(256)) * 3, b"xyz" * 1000]
    stream = b"".join(frame(p) for p in payloads)
    for cut in (1, 3, 4, 5, 7, 100, len(stream)):
        reader = FrameReader()
        got = []
        for i in range(0, len(stream), cut):
            got += reader.feed(stream[i:i + cut])
        assert got == payloads


def test_checker_place_is_configurable_by_environment(setup) -> None:
    res = setup.traincheck("run", "-p", "test_check_support:PLUGIN", "-o", "out", "-i",
                           "inv.jsonl", "train.py", "-",
                           env={"PYTHONPATH": HERE, "TRAINCHECK_CHECKER": "inline"})
    assert res.returncode == 0, res.stderr
    assert _checkers(res.stdout) == []


