"""VarConstant: per-variable flags and kinds stay what the reference run had."""

from traincheck_core.infer.synth import TraceBuilder, check_items, run_items, training_run
from traincheck_core.relations.var_constant import UNSET, VarConstant


def _by(invs, attr, value):
    found = [i for i in invs if i.params["attr"] == attr and i.params["value"] == value]
    return found[0] if found else None


def _state(requires_grad: bool, dtype: str = "float32", grad: str | None = None) -> dict:
    return {"data": "ab" * 8, "grad": grad, "requires_grad": requires_grad, "dtype": dtype,
            "shape": [4, 4], "device": "cpu", "is_param": True}


def test_learns_trained_flags_and_never_set_gradient_of_frozen():
    b = TraceBuilder()
    b.meta(step=0)
    for s in range(4):
        b.meta(step=s)
        b.var("model.body.weight", _state(True, grad=f"{s:016x}"))
        b.var("model.embed.weight", _state(False))
    b.end()
    invs = VarConstant().infer([run_items(b)])
    trained = _by(invs, "requires_grad", True)
    assert trained is not None and trained.params["variables"] == ["model.body.weight"]
    assert _by(invs, "requires_grad", False).params["variables"] == ["model.embed.weight"]
    assert _by(invs, "grad", UNSET).params["variables"] == ["model.embed.weight"]
    # a trained gradient changes, fingerprints and shapes are values: no rule about them
    assert _by(invs, "grad", "<set>") is None
    assert all(i.params["attr"] != "shape" for i in invs)


def test_setup_only_variables_and_changing_flags_are_not_rules():
    b = TraceBuilder()
    b.meta(step=0)
    b.var("model.once.weight", _state(True))
    for s in range(4):
        b.meta(step=s)
        b.var("model.unfrozen.weight", _state(s >= 2))
    b.end()
    invs = VarConstant().infer([run_items(b)])
    names = {n for i in invs for n in i.params["variables"]}
    assert "model.once.weight" not in names
    assert _by(invs, "requires_grad", True) is None and _by(invs, "requires_grad", False) is None


def test_checker_flags_inverted_freezing_at_the_first_state():
    rel = VarConstant()
    invs = rel.infer([run_items(training_run(TraceBuilder(), steps=5, params=2))])
    assert _by(invs, "requires_grad", True) is not None
    bug = TraceBuilder()
    bug.meta(step=0)
    bug.var("model.layer0.weight", _state(False))
    bug.meta(step=1)
    bug.var("model.layer1.weight", _state(True, dtype="float64"))
    bug.end()
    vs = check_items(rel, invs, bug)
    msgs = sorted(v.message for v in vs)
    assert [v.step for v in sorted(vs, key=lambda v: v.step)] == [0, 1]
    assert any("`requires_grad` of model.layer0.weight is False, expected True" in m
               for m in msgs)
    assert any("`dtype` of model.layer1.weight is 'float64', expected 'float32'" in m
               for m in msgs)


def test_healthy_rerun_is_clean():
    rel = VarConstant()
    invs = rel.infer([run_items(training_run(TraceBuilder(), steps=5, params=2, frozen=1))])
    again = training_run(TraceBuilder(run_id="run2"), steps=5, params=2, frozen=1, seed=1)
    assert check_items(rel, invs, again) == []
