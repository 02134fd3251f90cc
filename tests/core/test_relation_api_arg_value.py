"""APIArgValue on synthetic streams: a flag's value follows from the call's context."""

from traincheck_core.events import ObjSummary, Scalar
from traincheck_core.infer.synth import TraceBuilder, check_items, run_items, training_run
from traincheck_core.invariants import Clause
from traincheck_core.relations.api_arg_value import APIArgValue
from traincheck_core.relations.registry import builtin_relations

FWD = "torch.nn.Module.forward"
LAYER = "lib.Noise.__call__"  # a made-up library: the template knows no framework


def _by(invs, api, arg, value):
    return [i for i in invs if i.params == {"api": api, "arg": arg, "value": value}]


def test_registered_as_builtin():
    assert "APIArgValue" in {r.name for r in builtin_relations()}


def test_training_flag_follows_stage():
    invs = APIArgValue().infer([run_items(training_run(TraceBuilder(), steps=6,
                                                       eval_every=3))])
    (off,) = _by(invs, FWD, "self.training", False)
    assert off.precondition.any_of == [[Clause(kind="constant", field="meta.stage",
                                               values=["eval"])]]
    assert off.text == "Module.forward() gets `self.training` = False when stage = 'eval'"
    (on,) = _by(invs, FWD, "self.training", True)
    assert on.precondition.any_of == [[Clause(kind="constant", field="meta.stage",
                                              values=["train"])]]
    # Module.eval() always sees training=True: it never varied, so no invariant
    assert not [i for i in invs if i.params["api"] == "torch.nn.Module.eval"]


def test_checker_flags_evaluation_in_training_mode():
    rel = APIArgValue()
    invs = rel.infer([run_items(training_run(TraceBuilder(), steps=6, eval_every=3))])
    assert check_items(rel, invs, training_run(TraceBuilder(), steps=4, eval_every=2)) == []
    vs = check_items(rel, invs, training_run(TraceBuilder(), steps=4, eval_every=2,
                                             forget_eval=True))
    assert vs and {v.step for v in vs} == {2, 4}
    assert vs[0].message == ("`Net.forward()` at step 2 got `self.training` = True, "
                             "expected False")
    assert vs[0].expected is False and vs[0].observed is True


def _noise_run(run_id: str, steps: int, eval_active: bool = False) -> TraceBuilder:
    """A library layer called inside train/eval steps with two correlated flags."""
    b = TraceBuilder(run_id=run_id, frameworks={"lib": "1.0"})
    b.meta(step=0)
    for s in range(steps):
        for phase in ("lib.train_step", "lib.eval_step"):
            active = phase == "lib.train_step" or eval_active
            with b.call(phase):
                with b.call(LAYER, {"self": ObjSummary(type="Noise"),
                                    "deterministic": Scalar(not active),
                                    "active": Scalar(active), "rate": Scalar(0.5)}):
                    pass
        b.meta(step=s + 1)
    b.end()
    return b


def test_context_not_own_arguments_explains_the_value():
    invs = APIArgValue().infer([run_items(_noise_run("a", 4))])
    (off,) = _by(invs, LAYER, "active", False)
    # `deterministic` would explain `active` perfectly; only context may be used
    fields = {c.field for conj in off.precondition.any_of for c in conj}
    assert fields and all(f.startswith(("meta.", "within:")) for f in fields), fields
    assert not [i for i in invs if i.params["arg"] == "rate"]  # floats are not flags
    rel = APIArgValue()
    assert check_items(rel, invs, _noise_run("b", 3)) == []
    vs = check_items(rel, invs, _noise_run("c", 3, eval_active=True))
    assert {(v.step, v.observed) for v in vs if "active" in v.message} == {(0, True), (1, True),
                                                                          (2, True)}


def test_argument_with_many_values_is_not_a_flag():
    b = TraceBuilder(frameworks={"lib": "1.0"})
    b.meta(step=0, stage="train")
    for s in range(8):
        with b.call("lib.schedule", {"bucket": Scalar(s % 6)}):
            pass
        b.meta(step=s + 1, stage="train" if s % 2 else "eval")
    b.end()
    assert APIArgValue().infer([run_items(b)]) == []
