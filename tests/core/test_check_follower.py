"""The launcher's follower: cross-process invariants checked live over a run directory that the
processes are still writing (synthetic two-rank traces, the real engine and trace files)."""

from __future__ import annotations

import json
import threading

from traincheck_core.check.follower import LauncherFollower, cross_process_invariants
from traincheck_core.check.plan import available_relations
from traincheck_core.infer.synth import TraceBuilder, run_items, training_run
from traincheck_core.relations.consistency import Consistency


def _ranks(run_id: str, skip_update_at: int | None = None) -> list[TraceBuilder]:
    return [training_run(TraceBuilder(run_id=run_id, rank=r, world_size=2, pid=10 + r),
                         steps=6, params=3, counter=False,
                         skip_update_at=skip_update_at if r == 1 else None) for r in range(2)]


def _data_invariant():
    invs = Consistency().infer([run_items(*_ranks("ref"))])
    return [i for i in invs if i.params["attr"] == "data"][0]


def test_only_relations_that_compare_processes_are_cross_process():
    relations = available_relations()
    cross = {name for name, rel in relations.items() if rel.cross_process}
    assert cross == {"Consistency"}
    inv = _data_invariant()
    assert cross_process_invariants([inv], relations) == [inv]


def test_follower_reports_divergence_while_the_run_is_written(tmp_path, capsys):
    inv = _data_invariant()
    seen = threading.Event()
    got = []

    def on_violation(v):
        got.append(v)
        seen.set()

    f = LauncherFollower(tmp_path, [inv], {"Consistency": Consistency()},
                         on_violation=on_violation, poll=0.02)
    f.start()
    for i, b in enumerate(_ranks("bug", skip_update_at=4)):
        b.write(tmp_path / f"node-{10 + i}.tctrace")
    assert seen.wait(60)  # reported before the follower was told to finish
    f.finish()
    assert got[0].step == 4 and got[0].invariant == inv.id
    err = capsys.readouterr().err
    assert f"traincheck: VIOLATION at step 4 rank 0 [{inv.id}]" in err
    logged = [json.loads(x) for x in (tmp_path / "violations.jsonl").read_text().splitlines()]
    assert [v["step"] for v in logged][0] == 4
    (res,) = tmp_path.glob("checkresult-*.json")
    outcome = json.loads(res.read_text())["outcomes"][0]
    assert outcome["status"] == "violated" and outcome["first_step"] == 4


def test_follower_drains_what_was_written_when_the_program_exits(tmp_path):
    inv = _data_invariant()
    f = LauncherFollower(tmp_path, [inv], {"Consistency": Consistency()}, poll=60)
    f.start()  # polls once a minute: finish() must not wait for the next poll, and must
    # still read everything written before it (the final drain)
    for i, b in enumerate(_ranks("ok")):
        b.write(tmp_path / f"node-{10 + i}.tctrace")
    f.finish()
    assert f.violations == [] and not f.failed
    (res,) = tmp_path.glob("checkresult-*.json")
    assert json.loads(res.read_text())["outcomes"][0]["status"] == "held"


def test_follower_failure_never_breaks_the_run(tmp_path, capsys):
    inv = _data_invariant()
    for name in ("a.tctrace", "b.tctrace"):
        (tmp_path / name).write_bytes(b"not a trace file at all")
    f = LauncherFollower(tmp_path, [inv], {"Consistency": Consistency()}, poll=0.01)
    f.start()
    f.finish()
    assert f.failed
    err = capsys.readouterr().err
    assert err.count("traincheck:") == 1 and "traincheck check" in err


def test_a_single_process_run_is_not_read(tmp_path):
    inv = _data_invariant()
    _ranks("one")[0].write(tmp_path / "node-10.tctrace")
    f = LauncherFollower(tmp_path, [inv], {"Consistency": Consistency()}, poll=0.01)
    f.start()
    f.finish()
    (res,) = tmp_path.glob("checkresult-*.json")
    outcome = json.loads(res.read_text())["outcomes"][0]
    assert outcome["status"] == "not-triggered" and "only one process" in outcome["why_not"]
