"""APIArgFresh on synthetic streams: a key/batch argument must be new every step."""

from traincheck_core.events import Scalar, TensorSummary
from traincheck_core.infer.synth import TraceBuilder, check_items, fp, run_items
from traincheck_core.invariants import Clause
from traincheck_core.relations.api_arg_fresh import APIArgFresh
from traincheck_core.relations.registry import builtin_relations

STEP = "lib.train_step"  # a made-up library: the template knows no framework
EVAL = "lib.eval_step"


def _t(value: str) -> TensorSummary:
    return TensorSummary(type="lib.Array", shape=[2], dtype="uint32", device="cpu", fp=value)


def loop(run_id: str, steps: int, reuse_key_from: int | None = None,
         eval_every: int = 0) -> TraceBuilder:
    """A train step getting a new key every step (until ``reuse_key_from``) and the same data
    batch every step; before it, every ``eval_every`` steps, an evaluation with a fixed key."""
    b = TraceBuilder(run_id=run_id, frameworks={"lib": "1.0"})
    b.meta(step=0, stage="train")
    for s in range(steps):
        if eval_every and s % eval_every == 0:
            b.meta(stage="eval")
            with b.call(STEP, {"key": _t(fp("eval-key")), "x": _t(fp("data"))}):
                pass
            b.meta(stage="train")
        k = s if reuse_key_from is None or s < reuse_key_from else reuse_key_from
        with b.call(STEP, {"key": _t(fp(run_id, "key", k)), "x": _t(fp("data")),
                           "lr": Scalar(0.1)}):
            pass
        b.meta(step=s + 1)
    b.end()
    return b


def test_registered_as_builtin():
    assert "APIArgFresh" in {r.name for r in builtin_relations()}


def test_fresh_key_found_repeated_data_not():
    invs = APIArgFresh().infer([run_items(loop("a", 6))])
    assert [i.params for i in invs] == [{"api": STEP, "arg": "key"}]
    assert invs[0].precondition.any_of == []
    assert invs[0].text == ("lib.train_step() gets a new `key` every step (not one it got in the "
                            "previous step)")


def test_reused_key_is_flagged_at_the_first_repeat():
    rel = APIArgFresh()
    invs = rel.infer([run_items(loop("a", 6))])
    assert check_items(rel, invs, loop("b", 5)) == []
    vs = check_items(rel, invs, loop("c", 5, reuse_key_from=2))
    assert [v.step for v in vs] == [3, 4]
    assert vs[0].message.startswith("`lib.train_step()` at step 3 got the same `key` as in the "
                                    "previous step")


def test_context_precondition_separates_a_fixed_evaluation_key():
    # the evaluation reuses one key on purpose; within one step the training call's key is new
    # while the evaluation's is not: the stage separates them
    invs = APIArgFresh().infer([run_items(loop("a", 8, eval_every=1))])
    (inv,) = invs
    assert inv.precondition.any_of == [[Clause(kind="constant", field="meta.stage",
                                               values=["train"])]]
    rel = APIArgFresh()
    assert check_items(rel, invs, loop("b", 5, eval_every=1)) == []
    assert check_items(rel, invs, loop("c", 5, reuse_key_from=1, eval_every=1))
