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

        def work(i, q):
            s = traincheck_core.get_session()
            s.set_meta(rank=i)
            q.put(s is not None)

        if __name__ == "__main__":
            # Processes joined, not a Pool: a Pool may terminate a worker that is still starting
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            procs = [ctx.Process(target=work, args=(i, q)) for i in range(2)]
            for p in procs:
                p.start()
            ok = [q.get(timeout=120) for _ in procs]
            for p in procs:
                p.join()
            print(all(ok))
    """)
    res = runner.traincheck("run", "-o", "out", "spawny.py")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True"
    hdrs = _headers(runner.path / "out")
    assert len(hdrs) >= 3  # the program, its two workers (and a resource tracker)
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
