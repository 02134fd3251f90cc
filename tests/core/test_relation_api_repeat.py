"""APIRepeat: a per-epoch call sees several per-batch calls in between."""

from traincheck_core.infer.synth import TraceBuilder, check_items, run_items
from traincheck_core.relations.api_repeat import APIRepeat

SCHED = "torch.optim.lr_scheduler.LRScheduler.step"
OPT = "torch.optim.Optimizer.step"


def _loop(steps: int, per_epoch: int, b: TraceBuilder | None = None) -> TraceBuilder:
    """An optimizer step per batch; the scheduler steps every ``per_epoch`` batches."""
    b = b or TraceBuilder()
    for s in range(steps):
        b.meta(step=s)
        with b.call(OPT):
            pass
        if (s + 1) % per_epoch == 0:
            with b.call(SCHED):
                pass
    b.end()
    return b


def _find(invs, api, repeated):
    return [i for i in invs if i.params == {"api": api, "repeated": repeated}]


def test_infers_per_epoch_ratio_only():
    invs = APIRepeat().infer([run_items(_loop(24, 4))])
    found = _find(invs, SCHED, OPT)
    assert len(found) == 1
    assert found[0].text == "Optimizer.step() runs several times between two calls of " \
                            "LRScheduler.step()"
    # the scheduler runs once between two optimizer steps at most: no rule the other way
    assert _find(invs, OPT, SCHED) == []


def test_too_few_intervals_or_one_off_gaps_are_not_rules():
    assert _find(APIRepeat().infer([run_items(_loop(5, 4))]), SCHED, OPT) == []  # 1 call
    assert _find(APIRepeat().infer([run_items(_loop(12, 1))]), SCHED, OPT) == []  # per batch


def test_checker_flags_scheduler_moved_into_batch_loop_and_healthy_is_clean():
    rel = APIRepeat()
    invs = _find(rel.infer([run_items(_loop(24, 4))]), SCHED, OPT)
    vs = check_items(rel, invs, _loop(6, 1))
    assert vs and vs[0].step == 1
    assert "came after only 1 call(s) of Optimizer.step()" in vs[0].message
    assert check_items(rel, invs, _loop(40, 8)) == []
