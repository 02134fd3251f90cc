"""``traincheck check`` on recorded synthetic runs: exit codes, output, JSON, HTML, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_check_support import (
    equal_invariant,
    make_invariant,
    step_invariant,
    synthetic_records,
    write_run,
)

from traincheck_core.cli.main import main
from traincheck_core.invariants import write_invariants

PLUGIN = ["-p", "test_check_support:PLUGIN"]


@pytest.fixture
def inv_file(tmp_path: Path) -> Path:
    p = tmp_path / "inv.jsonl"
    write_invariants(p, [step_invariant(), equal_invariant(world=2),
                         step_invariant(api="opt.never_called")])
    return p


def run_dir(tmp_path: Path, name: str, **kw) -> Path:
    d = tmp_path / name
    d.mkdir()
    write_run(d, synthetic_records(**kw))
    return d


def check(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_healthy_run_exits_0_and_lists_never_triggered(tmp_path, capsys, inv_file) -> None:
    d = run_dir(tmp_path, "ok", steps=5, ranks=2)
    code, out, _ = check(capsys, str(d), "-i", str(inv_file), *PLUGIN)
    assert code == 0, out
    assert "2 held" in out and "1 not-triggered" in out
    assert "API never called: opt.never_called" in out
    assert "result: no violations" in out


def test_buggy_run_exits_1_with_diagnosis(tmp_path, capsys, inv_file) -> None:
    d = run_dir(tmp_path, "bug", steps=6, ranks=2, frozen_from=2, diverge_from=4)
    code, out, _ = check(capsys, str(d), "-i", str(inv_file), *PLUGIN)
    assert code == 1
    assert "VIOLATIONS FOUND" in out
    assert "opt.step() changed none of model.w2" in out
    assert "at train.py:42" in out
    assert "likely cause: parameters frozen by mistake" in out  # the invariant's hint
    assert "likely cause: the learning rate is 0" in out  # relation knowledge
    assert "replicas diverged" in out
    table = [line for line in out.splitlines() if line.startswith("violated")]
    assert len(table) == 2
    assert table[0].split()[1:5] == ["8", "8", "2", "0,1"]  # 4 steps x 2 ranks, first step 2


def test_json_and_html(tmp_path, capsys, inv_file) -> None:
    d = run_dir(tmp_path, "bug", steps=6, ranks=2, frozen_from=3)
    html = tmp_path / "r.html"
    code, out, _ = check(capsys, str(d), "-i", str(inv_file), *PLUGIN, "--json",
                         "--html", str(html))
    assert code == 1
    data = json.loads(out)
    by = {o["relation"]: o for o in data["outcomes"] if o["status"] == "violated"}
    assert by["test.step_changes"]["first_step"] == 3
    assert by["test.step_changes"]["firsts"][0]["loc"] == "train.py:42"
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<style>" in page
    assert "src=" not in page and "<link" not in page and "<script" not in page  # offline
    assert "step 3" in page and "parameters frozen by mistake" in page


def test_several_runs_checked_separately(tmp_path, capsys, inv_file) -> None:
    a = run_dir(tmp_path, "a", steps=4, ranks=2)
    b = run_dir(tmp_path, "b", steps=4, ranks=2, diverge_from=1)
    code, out, _ = check(capsys, str(a), str(b), "-i", str(inv_file), *PLUGIN, "--json")
    assert code == 1
    eq = next(o for o in json.loads(out)["outcomes"] if o["relation"] == "test.ranks_equal")
    # steps 0-3, plus step 4 closed by the end-of-trace record; run b diverges from step 1
    assert eq["checked"] == 10 and eq["occurrences"] == 4


def test_input_errors_exit_2(tmp_path, capsys, inv_file) -> None:
    d = run_dir(tmp_path, "ok", steps=3)
    code, _, err = check(capsys, str(d), "-i", str(tmp_path / "nope.jsonl"), *PLUGIN)
    assert code == 2 and "cannot read invariants file" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"traincheck_invariants": 1}\n{"id": 3}\n')
    code, _, err = check(capsys, str(d), "-i", str(bad), *PLUGIN)
    assert code == 2 and "bad.jsonl:2: malformed invariant" in err
    code, _, err = check(capsys, str(tmp_path / "missing"), "-i", str(inv_file), *PLUGIN)
    assert code == 2 and "no such trace file" in err
    (tmp_path / "empty").mkdir()
    code, _, err = check(capsys, str(tmp_path / "empty"), "-i", str(inv_file), *PLUGIN)
    assert code == 2 and "no trace files" in err


def test_corrupt_trace_names_file_and_offset(tmp_path, capsys, inv_file) -> None:
    d = run_dir(tmp_path, "ok", steps=3)
    f = next(d.iterdir())
    data = bytearray(f.read_bytes())
    data[200:204] = b"\xff\xff\xff\x7f"  # an impossible frame length in the middle
    f.write_bytes(bytes(data))
    code, _, err = check(capsys, str(d), "-i", str(inv_file), *PLUGIN)
    assert code == 2
    assert f.name in err and "corrupt trace at byte" in err


def test_unknown_relation_is_not_checked_not_silent(tmp_path, capsys) -> None:
    d = run_dir(tmp_path, "ok", steps=3)
    inv = tmp_path / "inv.jsonl"
    write_invariants(inv, [make_invariant("other.plugin_relation", {"a": 1})])
    code, out, _ = check(capsys, str(d), "-i", str(inv), *PLUGIN)
    assert code == 0
    assert "relation 'other.plugin_relation' is not available" in out
    assert "no invariant was triggered" in out
