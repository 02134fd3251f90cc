"""Processes started by multiprocessing (spawn) join the run; ``import traincheck.auto`` works
without ``traincheck run``."""

from __future__ import annotations

from traincheck_core.trace import TraceFile, trace_files


def _headers(path):
    out = []
    for f in trace_files(path):
        tf = TraceFile(f)
        tf.read_all()
        out.append(tf.header)
    return out


def test_multiprocessing_spawn_children_are_traced(runner) -> None:
    runner.script("spawny.py", """
        import multiprocessing as mp
        import traincheck_core

        def work(i):
            s = traincheck_core.get_session()
            s.set_meta(rank=i)
            return s is not None

        if __name__ == "__main__":
            with mp.get_context("spawn").Pool(2) as pool:
                print(all(pool.map(work, [0, 1])))
    """)
    res = runner.traincheck("run", "-o", "out", "spawny.py")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True"
    hdrs = _headers(runner.path / "out")
    assert len(hdrs) >= 3  # the program and its two (or more) workers
    assert len({h.run_id for h in hdrs}) == 1


def test_one_line_import(runner) -> None:
    runner.script("train.py", """
        import traincheck.auto  # noqa: F401
        import subprocess, sys
        import traincheck
        traincheck.annotate(stage="train")
        subprocess.run([sys.executable, "-c", "import traincheck_core as t; "
                        "print(t.get_session() is not None)"], check=True)
    """)
    res = runner.python("train.py", env={"TRAINCHECK_OUTPUT": "auto-out"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True"  # the child process joined the run too
    hdrs = _headers(runner.path / "auto-out")
    assert len(hdrs) == 2 and len({h.run_id for h in hdrs}) == 1


def test_annotate_is_a_noop_without_traincheck(runner) -> None:
    runner.script("plain.py", """
        import traincheck
        traincheck.annotate(stage="eval")
        print(traincheck.get_session())
    """)
    res = runner.python("plain.py")
    assert res.returncode == 0 and res.stdout.strip() == "None"
