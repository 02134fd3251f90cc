"""``traincheck run``: the program runs as under ``python``; every process gets a trace."""

from __future__ import annotations

import json
import os
import signal
import time

from traincheck_core import Footer, Header
from traincheck_core.trace import TraceFile, trace_files


def headers(path):
    out = []
    for f in trace_files(path):
        tf = TraceFile(f)
        events = tf.read_all()
        out.append((tf.header, events))
    return out


def test_argv_main_and_exit_code(runner) -> None:
    runner.script("prog.py", """
        import sys
        print(repr(sys.argv), __name__)
        sys.exit(7)
    """)
    res = runner.traincheck("run", "-o", "out", "prog.py", "a", "--flag=1", "-x")
    assert res.returncode == 7
    assert res.stdout.strip() == "['prog.py', 'a', '--flag=1', '-x'] __main__"
    (hdr, events), = headers(runner.path / "out")
    assert hdr.argv == ["prog.py", "a", "--flag=1", "-x"]
    assert isinstance(events[-1], Footer)


def test_module_mode(runner) -> None:
    runner.script("mymod.py", """
        import sys
        print(__name__, sys.argv[1:])
    """)
    res = runner.traincheck("run", "-o", "out", "-m", "mymod", "--lr", "3")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "__main__ ['--lr', '3']"


def test_script_that_raises_keeps_trace(runner) -> None:
    runner.script("boom.py", """
        import traincheck
        traincheck.annotate(stage="eval")
        raise SystemExit("training failed: bad batch")
    """)
    res = runner.traincheck("run", "-o", "out", "boom.py")
    assert res.returncode == 1
    assert "training failed: bad batch" in res.stderr
    (hdr, events), = headers(runner.path / "out")
    assert any(getattr(e, "values", {}).get("stage") == "eval" for e in events)


def test_two_processes_two_traces_with_headers(runner) -> None:
    runner.script("launch.py", """
        import os, subprocess, sys
        procs = []
        for rank in range(2):
            env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
            procs.append(subprocess.Popen([sys.executable, "worker.py"], env=env))
        sys.exit(max(p.wait() for p in procs))
    """)
    runner.script("worker.py", """
        import os, traincheck_core
        s = traincheck_core.get_session()
        s.set_meta(step=1)
        os.write(1, f"worker {os.environ['RANK']} {s is not None}\\n".encode())
    """)
    res = runner.traincheck("run", "-o", "out", "launch.py")
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.split()) == sorted("worker 0 True worker 1 True".split())
    found = headers(runner.path / "out")
    assert len(found) == 3  # the launcher and both workers
    run_ids = {h.run_id for h, _ in found}
    assert len(run_ids) == 1
    workers = sorted((h for h, _ in found if h.rank is not None), key=lambda h: h.rank)
    assert [(h.rank, h.world_size) for h in workers] == [(0, 2), (1, 2)]
    launcher = next(h for h, _ in found if h.rank is None)
    assert {h.ppid for h in workers} == {launcher.pid}
    assert len({h.pid for h, _ in found}) == 3
    for h, events in found:
        assert isinstance(h, Header) and h.schema == 1 and isinstance(events[-1], Footer)


def test_forked_child_gets_its_own_trace(runner) -> None:
    runner.script("forker.py", """
        import os, traincheck_core
        s = traincheck_core.get_session()
        s.set_meta(step=5)
        pid = os.fork()
        if pid == 0:
            traincheck_core.get_session().set_meta(worker=1)
            raise SystemExit(0)
        os.waitpid(pid, 0)
        s.set_meta(step=6)
    """)
    res = runner.traincheck("run", "-o", "out", "forker.py")
    assert res.returncode == 0, res.stderr
    found = headers(runner.path / "out")
    assert len(found) == 2
    child = next((h, e) for h, e in found if h.ppid != os.getpid() and any(
        getattr(x, "values", {}).get("worker") == 1 for x in e))
    # the child starts from the parent's meta and never repeats the parent's events
    metas = [x.values for x in child[1] if hasattr(x, "values")]
    assert metas[0] == {"step": 5}
    assert {"step": 6} not in metas


def test_sigkill_leaves_readable_prefix(runner) -> None:
    runner.script("long.py", """
        import time, traincheck_core
        s = traincheck_core.get_session()
        i = 0
        while True:
            i += 1
            s.set_meta(step=i)
            if i % 1000 == 0:
                time.sleep(0.01)
    """)
    import subprocess
    import sys

    from tests.conftest import _clean_env

    p = subprocess.Popen([sys.executable, "-m", "traincheck_core", "run", "-o", "out", "long.py"],
                         cwd=runner.path, env=_clean_env(), stderr=subprocess.PIPE)
    out = runner.path / "out"
    deadline = time.time() + 60
    while time.time() < deadline:
        files = list(out.glob("*.tctrace")) if out.exists() else []
        if files and files[0].stat().st_size > 200_000:
            break
        time.sleep(0.1)
    child_pid = int(files[0].name.split("-")[-1].split(".")[0])
    os.kill(child_pid, signal.SIGKILL)
    p.wait(timeout=60)
    assert p.returncode == 128 + signal.SIGKILL
    tf = TraceFile(files[0])
    events = tf.read_all()
    steps = [e.values["step"] for e in events if hasattr(e, "values")]
    assert len(steps) > 1000
    assert steps == list(range(1, len(steps) + 1))  # a gap-free prefix
    assert not tf.finished


def test_sigterm_closes_trace_cleanly(runner) -> None:
    runner.script("wait.py", """
        import time, traincheck_core
        traincheck_core.get_session().set_meta(step=1)
        print("ready", flush=True)
        time.sleep(60)
    """)
    import subprocess
    import sys

    from tests.conftest import _clean_env

    p = subprocess.Popen([sys.executable, "-m", "traincheck_core", "run", "-o", "out", "wait.py"],
                         cwd=runner.path, env=_clean_env(), stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)  # forwarded to the program by traincheck run
    p.wait(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM
    (hdr, events), = headers(runner.path / "out")
    assert isinstance(events[-1], Footer) and events[-1].reason == "signal:SIGTERM"


def test_missing_script_is_usage_error(runner) -> None:
    res = runner.traincheck("run", "nothere.py")
    assert res.returncode == 2
    assert "can't open file 'nothere.py'" in res.stderr


def test_default_output_dir_is_printed(runner) -> None:
    runner.script("t.py", "pass\n")
    res = runner.traincheck("run", "t.py")
    assert res.returncode == 0
    dirs = [p for p in runner.path.iterdir() if p.name.startswith("traincheck-run-")]
    assert len(dirs) == 1
    assert dirs[0].name in res.stderr


def test_inspect_json_counts(runner) -> None:
    runner.script("t.py", """
        import traincheck_core
        s = traincheck_core.get_session()
        for i in range(3):
            s.set_meta(step=i)
    """)
    runner.traincheck("run", "-o", "out", "t.py")
    res = runner.traincheck("inspect", "out", "--json")
    assert res.returncode == 0
    (row,) = json.loads(res.stdout)
    assert row["events"] == {"Header": 1, "MetaUpdate": 3, "Footer": 1}
    assert row["complete"] is True
