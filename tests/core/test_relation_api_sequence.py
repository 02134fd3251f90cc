"""APISequence on synthetic streams: eval() precedes evaluation forwards."""

from traincheck_core.events import CallStart
from traincheck_core.infer.synth import TraceBuilder, check_items, run_items, training_run
from traincheck_core.invariants import Clause
from traincheck_core.relations.api_sequence import APISequence

EVAL, FWD = "torch.nn.Module.eval", "torch.nn.Module.forward"


def _eval_precedes(invs):
    return [i for i in invs if i.params == {"kind": "precedes", "first": EVAL, "then": FWD}]


def test_eval_precedes_evaluation_forwards_with_stage_precondition():
    run = run_items(training_run(TraceBuilder(), steps=6, eval_every=3))
    found = _eval_precedes(APISequence().infer([run]))
    assert len(found) == 1
    inv = found[0]
    assert inv.precondition.any_of == [[Clause(kind="constant", field="meta.stage",
                                               values=["eval"])]]
    assert inv.text == ("Module.eval() precedes every Module.forward() call in the same "
                        "step/stage when stage = 'eval'")


def test_reference_without_eval_call_gives_no_such_invariant():
    # a counterexample with nothing to separate it: evaluation forwards without eval()
    run = run_items(training_run(TraceBuilder(), steps=6, eval_every=3))
    b = training_run(TraceBuilder(run_id="b"), steps=6, eval_every=3)
    ids = {e.id for e in b.events if isinstance(e, CallStart) and e.api == EVAL}
    b.events = [e for e in b.events if getattr(e, "id", None) not in ids]  # eval() left out
    bad = run_items(b)
    assert _eval_precedes(APISequence().infer([run, bad])) == []


def test_checker_reports_forgotten_eval():
    rel = APISequence()
    inv = _eval_precedes(rel.infer([run_items(training_run(TraceBuilder(), steps=6,
                                                                eval_every=3))]))[0]
    assert check_items(rel, [inv], training_run(TraceBuilder(), steps=4, eval_every=2)) == []
    vs = check_items(rel, [inv], training_run(TraceBuilder(), steps=4, eval_every=2,
                                              forget_eval=True))
    assert vs and vs[0].step == 2
    assert "`Net.forward()` at step 2 ran without a preceding Module.eval()" in vs[0].message


def test_follows_is_not_judged_at_the_end_of_a_trace():
    run = run_items(training_run(TraceBuilder(), steps=3))
    invs = APISequence().infer([run])
    zs = [i for i in invs if i.params == {"kind": "follows", "first":
                                          "torch.optim.Optimizer.zero_grad",
                                          "then": "torch.optim.Optimizer.step"}]
    assert len(zs) == 1 and zs[0].support["positive"] == 2
