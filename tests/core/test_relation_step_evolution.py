"""StepEvolution: counters +1 per step, trained values change every step."""

from traincheck_core.infer.synth import TraceBuilder, check_items, run_items, training_run
from traincheck_core.invariants import Clause
from traincheck_core.relations.step_evolution import StepEvolution


def _get(invs, shape, attr):
    found = [i for i in invs if i.params == {"shape": shape, "attr": attr}]
    return found[0] if found else None


def test_counter_and_trained_values():
    invs = StepEvolution().infer([run_items(training_run(TraceBuilder(), steps=6, frozen=2))])
    inc = _get(invs, "plus_one", "value")
    assert inc is not None and "grows by exactly 1 every step" in inc.text
    assert "optimizer.state.step" in inc.text
    data = _get(invs, "changes", "data")
    assert data is not None
    # the frozen parameters never change: the precondition singles out trained ones
    assert data.precondition.any_of == [[Clause(kind="present", field="var.grad")]]


def test_planted_skip_removes_both():
    invs = StepEvolution().infer([run_items(training_run(TraceBuilder(), steps=6,
                                                         skip_update_at=3))])
    assert _get(invs, "plus_one", "value") is None
    assert _get(invs, "changes", "data") is None


def test_checker_reports_stalled_counter():
    rel = StepEvolution()
    inv = _get(rel.infer([run_items(training_run(TraceBuilder(), steps=6))]), "plus_one",
               "value")
    vs = check_items(rel, [inv], training_run(TraceBuilder(), steps=6, skip_update_at=2))
    assert [v.step for v in vs] == [2, 3]
    assert vs[0].message == ("step 2: `value` of optimizer.state.step went from 2 to 2, "
                             "expected 3")
