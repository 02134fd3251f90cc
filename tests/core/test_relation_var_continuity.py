"""VarContinuity: restored objects start where their namesakes stopped."""

from traincheck_core.infer.synth import TraceBuilder, check_items, run_items
from traincheck_core.relations.var_continuity import VarContinuity, namesake

NAMES = ["opt.state.model.enc.weight.m", "opt.state.model.dec.weight.m"]


def _state(fpv: str) -> dict:
    return {"data": fpv, "grad": None, "dtype": "float32", "shape": [4], "device": "cpu"}


def _resume(swap: bool, fresh: bool = False) -> TraceBuilder:
    """Train 3 steps, then re-create the optimizer and restore its state (swapped if asked)."""
    b = TraceBuilder()
    for s in range(3):
        b.meta(step=s)
        for i, n in enumerate(NAMES):
            b.var(n, _state(f"{s:08x}{i:08x}"))
    b.meta(step=3)
    for i, n in enumerate(NAMES):
        j = 1 - i if swap else i
        b.var(namesake(n).replace("opt.", "opt_2.").replace("model.", "model_2."),
              _state("f" * 16 if fresh else f"{2:08x}{j:08x}"))
    b.end()
    return b


def test_namesake_strips_instance_suffixes_only():
    assert namesake("opt_2.state.model_2.fc.weight") == "opt.state.model.fc.weight"
    assert namesake("model.layer_12.weight") == "model.layer.weight"
    assert namesake("model.conv2d.weight") == "model.conv2d.weight"


def test_restore_learned_and_swapped_state_flagged_at_the_restore_step():
    rel = VarContinuity()
    invs = rel.infer([run_items(_resume(swap=False))])
    assert len(invs) == 1 and invs[0].params == {"root": "opt", "attr": "data"}
    vs = check_items(rel, invs, _resume(swap=True))
    assert len(vs) == 2 and {v.step for v in vs} == {3}
    assert "do not start from their namesake's last `data`" in vs[0].message
    assert check_items(rel, invs, _resume(swap=False)) == []


def test_fresh_objects_are_not_a_rule():
    assert VarContinuity().infer([run_items(_resume(swap=False, fresh=True))]) == []
