"""EventContain on synthetic streams: optimizer step changes parameters with a gradient,
zero_grad resets gradients; planted counterexamples; the checker's messages."""

from traincheck_core.infer.synth import TraceBuilder, check_items, run_items, training_run
from traincheck_core.invariants import Clause
from traincheck_core.preconditions import IDENTITY_FIELDS
from traincheck_core.relations.event_contain import EventContain, transition

STEP = "torch.optim.Optimizer.step"
ZERO = "torch.optim.Optimizer.zero_grad"


def _find(invs, api, attr, change):
    for i in invs:
        p = i.params
        if p.get("kind") == "var" and (p["api"], p["attr"], p["change"]) == (api, attr, change):
            return i
    return None


def _fields(inv):
    return {c.field for conj in inv.precondition.any_of for c in conj}


def test_transitions():
    assert transition("a", "b") == "changed"
    assert transition("a", None) == "to_none"
    assert transition(None, "a") == "set"
    assert transition("a", "a") is None


def test_step_changes_every_parameter_with_a_gradient():
    run = run_items(training_run(TraceBuilder(), steps=5, params=3, frozen=2))
    invs = EventContain().infer([run])
    inv = _find(invs, STEP, "data", "changed")
    assert inv is not None
    assert inv.precondition.any_of == [[Clause(kind="present", field="var.grad")]]
    # variable hypotheses are per variable type ("param" in these synthetic traces)
    assert inv.text.startswith("Optimizer.step changes the value (`data`) of every param "
                               "when it has a gradient (model.layer0.weight")
    assert inv.support["positive"] == 15 and inv.support["runs"] == 1
    assert inv.frameworks == {"torch": ["2.13.0"]}


def test_zero_grad_resets_gradients():
    run = run_items(training_run(TraceBuilder(), steps=5, params=3, frozen=1))
    inv = _find(EventContain().infer([run]), ZERO, "grad", "to_none")
    assert inv is not None
    assert "resets the gradient of every param to None when it has a gradient" in inv.text


def test_planted_counterexample_without_separator_removes_it():
    # one step leaves the parameters untouched although they have gradients: the examples of
    # that step look exactly like the positives, so no precondition can separate them
    run = run_items(training_run(TraceBuilder(), steps=5, params=3, skip_update_at=2))
    assert _find(EventContain().infer([run]), STEP, "data", "changed") is None


def test_identity_fields_never_in_preconditions():
    # two runs whose processes differ in pid, host, call locations and step numbers
    a = run_items(training_run(TraceBuilder(run_id="a", pid=1, host="x"), steps=4, frozen=1))
    b = run_items(training_run(TraceBuilder(run_id="b", pid=2, host="y"), steps=6, frozen=1))
    invs = EventContain().infer([a, b])
    assert invs
    for inv in invs:
        for f in _fields(inv):
            assert f.rsplit(".", 1)[-1] not in IDENTITY_FIELDS, (inv.text, f)
    inv = _find(invs, STEP, "data", "changed")
    assert inv.runs == ["a", "b"] and inv.support["runs"] == 2


def test_checker_names_step_and_parameters():
    rel = EventContain()
    invs = rel.infer([run_items(training_run(TraceBuilder(), steps=5, params=3))])
    inv = _find(invs, STEP, "data", "changed")
    bad = training_run(TraceBuilder(), steps=6, params=3, skip_update_at=3,
                       optimizer="torch.optim.adadelta.Adadelta")
    vs = [v for v in check_items(rel, [inv], bad)]
    assert len(vs) == 1
    v = vs[0]
    assert v.step == 3 and v.invariant == inv.id and v.loc == "train.py:10"
    assert v.message.startswith("`Adadelta.step()` at step 3 changed `data` of none of the 3 "
                                "variables it normally changes: model.layer0.weight")
    assert v.hint and v.observed


def test_checker_is_quiet_on_a_healthy_run_and_counts_checks():
    rel = EventContain()
    invs = rel.infer([run_items(training_run(TraceBuilder(), steps=5, params=3, frozen=1))])
    checker_invs = [i for i in invs if i.params.get("kind") == "var"]
    good = training_run(TraceBuilder(), steps=7, params=3, frozen=1)
    assert check_items(rel, checker_invs, good) == []
    checker = rel.checker(checker_invs)
    from traincheck_core.analysis import Assembler
    from traincheck_core.infer.synth import merged_records
    for item in Assembler().feed_all(merged_records(good)):
        checker.feed(item)
    assert all(s.checked > 0 for s in checker.stats().values())


def test_a_variable_the_rule_does_not_fit_is_named_as_an_exception():
    # model.layer0.bias has a gradient but the step leaves it unchanged on odd steps (a bias
    # right before a batch norm): the rule still holds for the other parameters, and the
    # invariant names the exception by its stable name instead of being dropped
    run = run_items(training_run(TraceBuilder(), steps=6, params=3, frozen=1, flaky=1))
    inv = _find(EventContain().infer([run]), STEP, "data", "changed")
    assert inv is not None
    assert inv.precondition.any_of == [[
        Clause(kind="present", field="var.grad"),
        Clause(kind="not_in", field="var.name", values=["model.layer0.bias"])]]
    assert "when it has a gradient and name is not 'model.layer0.bias'" in inv.text
    # checking: a healthy run with the same flaky bias is clean; a skipped step is caught
    rel = EventContain()
    ok = training_run(TraceBuilder(run_id="ok"), steps=6, params=3, frozen=1, flaky=1)
    assert check_items(rel, [inv], ok) == []
    bad = training_run(TraceBuilder(run_id="bad"), steps=6, params=3, frozen=1, flaky=1,
                       skip_update_at=4)
    vs = check_items(rel, [inv], bad)
    assert [v.step for v in vs] == [4]
    assert "model.layer0.bias" not in vs[0].message


def test_too_many_exceptions_drop_the_hypothesis():
    # when the variables the rule does not fit outnumber those it fits, it is not a rule
    run = run_items(training_run(TraceBuilder(), steps=6, params=1, flaky=2))
    assert _find(EventContain().infer([run]), STEP, "data", "changed") is None


def _setup_run(steps_seen: list[int]):
    # a setup-like call that re-initializes every weight, made at the given steps
    b = TraceBuilder()
    b.meta(step=0)
    for i in range(3):
        b.var(f"model.layer{i}.weight", {"data": f"{i:016x}", "grad": None})
    for k, step in enumerate(steps_seen):
        b.meta(step=step)
        with b.call("torch.nn.Module.reset_parameters") as c:
            for i in range(3):
                b.var(f"model.layer{i}.weight", {"data": f"{i + 10 * k + 10:016x}",
                                                 "grad": None}, call=c)
    b.end()
    return run_items(b)


def test_setup_calls_seen_at_one_step_give_no_invariant():
    # calls made while building the model (all at step 0) are one occasion: no rule;
    # the same calls at two steps are a recurring behaviour
    api = "torch.nn.Module.reset_parameters"
    assert _find(EventContain().infer([_setup_run([0, 0, 0])]), api, "data", "changed") is None
    assert _find(EventContain().infer([_setup_run([0, 1])]), api, "data", "changed") is not None
