"""The checker engine on synthetic event streams: routing, step windows, dedup, fail-open,
why-not reasons, merging."""

from __future__ import annotations

from test_check_support import (
    RELATIONS,
    equal_invariant,
    make_invariant,
    step_invariant,
    synthetic_records,
)

from traincheck_core.check.engine import CheckEngine
from traincheck_core.check.plan import compile_plan
from traincheck_core.check.result import merge_results


def run(invs, records):
    engine = CheckEngine(invs, RELATIONS)
    new = []
    for rec in records:
        new += engine.feed_record(rec)
    new += engine.finish()
    return engine, new, {o.id: o for o in engine.result().outcomes}


def test_healthy_stream_holds() -> None:
    inv = step_invariant()
    _, new, out = run([inv], synthetic_records(steps=5))
    assert new == []
    assert out[inv.id].status == "held"
    assert out[inv.id].checked == 5


def test_frozen_parameter_first_violation_once_repeats_counted() -> None:
    inv = step_invariant()
    _, new, out = run([inv], synthetic_records(steps=8, frozen_from=3))
    assert len(new) == 1  # reported loudly once ...
    v = new[0]
    assert (v.step, v.rank) == (3, 0)
    assert "model.w2" in v.message and "model.w1" not in v.message
    assert v.loc == "train.py:42"  # the user's call site, from the call record
    assert v.hint == "parameters frozen by mistake"  # filled in from the invariant
    o = out[inv.id]
    assert o.status == "violated"
    assert (o.occurrences, o.steps_violated, o.repeats) == (5, 5, 4)  # ... counted each step
    assert o.first_step == 3 and o.per_step == {3: 1, 4: 1, 5: 1, 6: 1, 7: 1}


def test_first_violation_per_rank() -> None:
    inv = step_invariant()
    _, new, out = run([inv], synthetic_records(steps=6, ranks=3, frozen_from=2))
    assert sorted((v.rank, v.step) for v in new) == [(0, 2), (1, 2), (2, 2)]
    assert out[inv.id].ranks == [0, 1, 2]
    assert {v.source for v in new} == {"h:100", "h:101", "h:102"}


def test_ranks_diverging_reported_at_first_step() -> None:
    inv = equal_invariant(world=2)
    _, new, out = run([inv], synthetic_records(steps=6, ranks=2, diverge_from=4))
    assert [(v.step, v.rank) for v in new] == [(4, 1)]
    assert out[inv.id].occurrences == 2  # steps 4 and 5
    assert out[inv.id].checked == 6


def test_step_windows_are_evicted() -> None:
    engine = CheckEngine([step_invariant(), equal_invariant()], RELATIONS)
    most = 0
    for rec in synthetic_records(steps=30, ranks=2, frozen_from=1, diverge_from=1):
        engine.feed_record(rec)
        most = max(most, len(engine._windows))
    assert most <= 2  # one open window per process at most, never one per step
    engine.finish()
    assert engine._windows == {}
    assert engine.checkers["test.ranks_equal"].windows == {}


def test_unknown_relation_and_broken_checker_fail_open() -> None:
    good = step_invariant()
    ghost = make_invariant("nobody.knows", {"x": 1})
    broken = make_invariant("test.broken", {})
    errors = []
    engine = CheckEngine([good, ghost, broken], RELATIONS,
                         on_error=lambda rel, exc: errors.append((rel, type(exc))))
    new = engine.feed_records(synthetic_records(steps=5, frozen_from=2))
    engine.finish()
    out = {o.id: o for o in engine.result().outcomes}
    assert errors == [("test.broken", ZeroDivisionError)]  # told once, then off
    assert out[broken.id].status == "error" and "checker bug" in out[broken.id].why_not
    assert out[ghost.id].status == "not-checked" and "nobody.knows" in out[ghost.id].why_not
    assert [v.invariant for v in new] == [good.id]  # the good checker kept going
    assert out[good.id].status == "violated"


def test_why_never_triggered() -> None:
    no_api = step_invariant(api="opt.other_step")
    no_var = equal_invariant(var="model.missing")
    no_var2 = step_invariant(vars=["model.w9"])  # the API runs, but never touches this
    no_pre = equal_invariant(world=3)  # seen, but never on three ranks
    _, _, out = run([no_api, no_var, no_var2, no_pre], synthetic_records(steps=3, ranks=2))
    assert out[no_api.id].status == "not-triggered"
    assert out[no_api.id].why_not == "API never called: opt.other_step"
    assert out[no_var.id].why_not == "variable not observed: model.missing"
    assert out[no_var2.id].why_not == "variable not observed: model.w9"
    assert out[no_pre.id].why_not == "precondition never met"


def test_plan_is_union_of_parts() -> None:
    plan = compile_plan([step_invariant(), equal_invariant(var="model.b")], RELATIONS)
    assert not plan.full and plan.every == 1
    assert plan.apis == ["opt.step"]
    assert plan.variables == ["model.b", "model.w1", "model.w2"]
    assert compile_plan([make_invariant("test.broken", {})], RELATIONS).full  # needs all
    assert compile_plan([make_invariant("nobody.knows", {})], RELATIONS).apis == []


def test_merge_results_of_two_runs() -> None:
    inv = step_invariant()
    _, _, a = run([inv], synthetic_records(steps=4))
    _, _, b = run([inv], synthetic_records(steps=4, frozen_from=2))
    ra = CheckEngine([inv], RELATIONS)
    ra.feed_records(synthetic_records(steps=4))
    rb = CheckEngine([inv], RELATIONS)
    rb.feed_records(synthetic_records(steps=4, frozen_from=2))
    merged = merge_results([ra.result(), rb.result()])
    (o,) = merged.outcomes
    assert o.status == "violated" and o.checked == 8 and o.occurrences == 2
    assert merged.exit_code() == 1
    assert a[inv.id].status == "held" and b[inv.id].status == "violated"


class _Counting:
    """Wraps a checker and records the kinds (and APIs) of the items it was given."""

    def __init__(self, inner) -> None:
        self.inner, self.seen = inner, []

    def feed(self, item):
        self.seen.append(item.api if type(item).__name__ == "CallRecord"
                         else type(item).__name__)
        return self.inner.feed(item)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_checkers_get_only_the_items_their_plan_names() -> None:
    """The hot path: calls no deployed invariant is about never reach a checker, and a
    relation that needs no variable state gets no variable changes; verdicts are unchanged."""
    about_other = step_invariant(api="opt.other_step")
    engine = CheckEngine([about_other, equal_invariant()], RELATIONS)
    counting = {n: _Counting(c) for n, c in engine.checkers.items()}
    engine.checkers.update(counting)
    for rec in synthetic_records(steps=4, ranks=2, frozen_from=1):
        engine.feed_record(rec)
    engine.finish()
    step_seen = counting["test.step_changes"].seen
    assert "opt.step" not in step_seen  # its invariant is about opt.other_step only
    assert "StepEnd" in step_seen and "VarChange" in step_seen
    ranks_seen = counting["test.ranks_equal"].seen
    assert "opt.step" not in ranks_seen and "VarChange" in ranks_seen
    # a checker whose invariant is about opt.step still sees it and still catches the bug
    _, new, _ = run([step_invariant()], synthetic_records(steps=4, frozen_from=1))
    assert [v.step for v in new] == [1]


def test_never_triggered_reasons_merge_to_what_the_furthest_process_saw() -> None:
    from traincheck_core.check.result import CheckResult, InvariantOutcome, merge_why_not

    # a launcher never called the API; both ranks called it but the precondition never held
    why = ["API never called: torch.nn.Module.forward", "precondition never met",
           "precondition never met"]
    outcomes = [CheckResult(outcomes=[InvariantOutcome(id="i", relation="r",
                                                       status="not-triggered", why_not=w)])
                for w in why]
    (o,) = merge_results(outcomes).outcomes
    assert o.status == "not-triggered" and o.why_not == "precondition never met"
    # APIs no process called remain; one that some process called goes
    assert merge_why_not("API never called: a, b", "API never called: b, c") == \
        "API never called: b"
    assert merge_why_not("API never called: a", "variable not observed: model.w") == \
        "variable not observed: model.w"
    # each process missed a different API: both are said
    assert merge_why_not("API never called: a", "API never called: b") == \
        "API never called: a; API never called: b"
    assert merge_why_not("", "precondition never met") == "precondition never met"
