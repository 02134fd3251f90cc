"""Consistency across ranks, paired by (step, variable name)."""

from traincheck_core.infer.synth import TraceBuilder, check_items, run_items, training_run
from traincheck_core.invariants import Clause
from traincheck_core.relations.consistency import Consistency


def _ranks(run_id="ddp", steps=5, replica=True, skew=0, **kw):
    # skew shifts one rank's clock: pairing must not depend on wall-clock overlap
    return [training_run(TraceBuilder(run_id=run_id, rank=r, world_size=2, pid=10 + r,
                                      t0=r * skew), steps=steps, seed=r, replica=replica,
                         **kw) for r in range(2)]


def _data_inv(invs):
    found = [i for i in invs if i.params["attr"] == "data"]
    return found[0] if found else None


def test_replicated_parameters_equal_across_ranks():
    inv = _data_inv(Consistency().infer([run_items(*_ranks(params=3, frozen=1))]))
    assert inv is not None
    assert inv.params == {"attr": "data", "across": "ranks", "pair_by": "step,name"}
    assert inv.text.startswith("replicated variables have equal `data` across ranks at every "
                               "step")
    assert "model.layer0.weight" in inv.text


def test_pairing_ignores_wall_clock_skew():
    # rank 1 runs a whole trace later in time: states still pair by step and name
    ranks = _ranks(params=2)
    late = training_run(TraceBuilder(run_id="ddp", rank=1, world_size=2, pid=11,
                                     t0=10**9), steps=5, params=2)
    inv = _data_inv(Consistency().infer([run_items(ranks[0], late)]))
    assert inv is not None
    # every step end of both ranks paired (6 step ends x 2 parameters), none judged alone;
    # the negatives are the step counter, which has no `data` (the precondition says so)
    assert inv.support["positive"] == 12
    assert inv.precondition.any_of == [[Clause(kind="present", field="var.data")]]


def test_single_process_gives_no_hypothesis():
    assert Consistency().infer([run_items(training_run(TraceBuilder(), steps=4))]) == []


def test_planted_divergence_removes_the_invariant():
    # rank 1 skips one update: at that step the replicas differ and nothing separates it
    r0 = training_run(TraceBuilder(run_id="d", rank=0, world_size=2, pid=1), steps=5,
                      params=3, counter=False)
    r1 = training_run(TraceBuilder(run_id="d", rank=1, world_size=2, pid=2), steps=5,
                      params=3, counter=False, skip_update_at=2)
    assert _data_inv(Consistency().infer([run_items(r0, r1)])) is None


def test_checker_reports_the_step_and_variables():
    rel = Consistency()
    inv = _data_inv(rel.infer([run_items(*_ranks(params=3, counter=False))]))
    r0 = training_run(TraceBuilder(run_id="c", rank=0, world_size=2, pid=1), steps=6,
                      params=3, counter=False)
    r1 = training_run(TraceBuilder(run_id="c", rank=1, world_size=2, pid=2), steps=6,
                      params=3, counter=False, skip_update_at=4)
    vs = check_items(rel, [inv], r0, r1)
    assert vs and vs[0].step == 4
    assert vs[0].message.startswith("at step 4, `data` differs across ranks 0, 1 for 3 of 3 "
                                    "replicated variables: model.layer0.weight")
    assert check_items(rel, [inv], *_ranks(run_id="ok", steps=6, params=3, counter=False)) == []
