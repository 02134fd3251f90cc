"""`traincheck infer` on synthetic traces: output file, bad input (exit 2 with a message)."""

from __future__ import annotations

import json

from traincheck_core.infer.synth import TraceBuilder, training_run


def _trace(runner, name: str, run_id: str = "r1", **kw) -> None:
    (runner.path / name).mkdir()
    b = training_run(TraceBuilder(run_id=run_id), steps=5, params=3, eval_every=2, **kw)
    b.write(runner.path / name / "trace-r0-node-1.tctrace")


def test_infer_writes_sorted_invariants_with_a_header(runner):
    _trace(runner, "ok")
    res = runner.traincheck("infer", "ok", "-o", "inv.jsonl", "-j", "1")
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stderr and "EventContain" in res.stderr  # the summary table
    lines = (runner.path / "inv.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["traincheck_invariants"] == 1
    ids = [json.loads(x)["id"] for x in lines[1:]]
    assert ids and ids == sorted(ids) and len(set(ids)) == len(ids)


def test_missing_trace_dir_is_a_usage_error(runner):
    res = runner.traincheck("infer", "nowhere", "-o", "inv.jsonl")
    assert res.returncode == 2
    assert "nowhere" in res.stderr and "Traceback" not in res.stderr
    assert not (runner.path / "inv.jsonl").exists()


def test_dir_without_traces_says_how_to_record_one(runner):
    (runner.path / "empty").mkdir()
    res = runner.traincheck("infer", "empty", "-o", "inv.jsonl")
    assert res.returncode == 2
    assert "no trace files" in res.stderr and "traincheck run" in res.stderr


def test_corrupt_trace_names_file_and_offset(runner):
    _trace(runner, "bad")
    f = runner.path / "bad" / "trace-r0-node-1.tctrace"
    data = bytearray(f.read_bytes())
    data[400:408] = b"\xff" * 8  # garbage in the middle of a frame header
    f.write_bytes(bytes(data))
    res = runner.traincheck("infer", "bad", "-o", "inv.jsonl", "-j", "2")
    assert res.returncode == 2, res.stderr
    assert "trace-r0-node-1.tctrace" in res.stderr and "corrupt trace at byte" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (runner.path / "inv.jsonl").exists()


def test_not_a_trace_at_all(runner):
    (runner.path / "junk").mkdir()
    (runner.path / "junk" / "trace-r0-x-1.tctrace").write_bytes(b"hello world, not a trace")
    res = runner.traincheck("infer", "junk", "-o", "inv.jsonl")
    assert res.returncode == 2
    assert "bad magic" in res.stderr


def test_unknown_relation_filter(runner):
    _trace(runner, "ok")
    res = runner.traincheck("infer", "ok", "--relation", "Nope", "-o", "inv.jsonl")
    assert res.returncode == 2 and "unknown relation 'Nope'" in res.stderr
