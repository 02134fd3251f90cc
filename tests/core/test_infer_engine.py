"""The inference engine on synthetic runs: reproducible whatever the number of workers,
several runs counted, identity fields never in preconditions."""

from __future__ import annotations

import msgspec

from traincheck_core.infer.engine import infer_paths
from traincheck_core.infer.synth import TraceBuilder, training_run
from traincheck_core.preconditions import is_identity
from traincheck_core.relations.registry import builtin_relations


def _runs(tmp_path, n: int = 2) -> list[str]:
    dirs = []
    for i in range(n):
        d = tmp_path / f"run{i}"
        d.mkdir()
        for rank in range(2):
            b = TraceBuilder(run_id=f"run{i}", rank=rank, world_size=2, pid=100 * i + rank,
                             host=f"host{i}")
            training_run(b, steps=6, params=3, frozen=1, eval_every=2, seed=i)
            b.write(d / f"trace-r{rank}-host{i}-{100 * i + rank}.tctrace")
        dirs.append(str(d))
    return dirs


def _encode(res) -> bytes:
    return msgspec.json.encode(res.invariants, order="sorted")


def test_output_does_not_depend_on_workers_or_order(tmp_path):
    dirs = _runs(tmp_path)
    one = infer_paths(dirs, builtin_relations(), jobs=1)
    two = infer_paths(list(reversed(dirs)), builtin_relations(), jobs=2)
    assert one.invariants and _encode(one) == _encode(two)


def test_several_runs_are_counted_and_listed(tmp_path):
    res = infer_paths(_runs(tmp_path), builtin_relations(), jobs=1)
    assert {r.run_id for r in res.runs} == {"run0", "run1"}
    both = [i for i in res.invariants if i.support["runs"] == 2]
    assert both and all(i.runs == ["run0", "run1"] for i in both)
    cons = [i for i in res.invariants if i.relation == "Consistency"
            and i.params["attr"] == "data"]
    assert cons and cons[0].runs == ["run0", "run1"]


def test_identity_fields_never_in_preconditions(tmp_path):
    res = infer_paths(_runs(tmp_path), builtin_relations(), jobs=1)
    fields = {c.field for i in res.invariants for conj in i.precondition.any_of for c in conj}
    assert fields and not [f for f in fields if is_identity(f)]
