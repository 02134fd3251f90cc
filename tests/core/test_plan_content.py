"""The instrumentation plan says which variables' content (fingerprints) the deployed invariants
compare, whether only at step ends and whether only to see if it changed; full tracing still
asks for all of it."""

from __future__ import annotations

from typing import Any

from traincheck_core.check.plan import available_relations, compile_plan
from traincheck_core.invariants import Clause, Invariant, Precondition
from traincheck_core.relations.base import PlanPart, Relation
from traincheck_core.session import (
    CONTENT_ALWAYS,
    CONTENT_NONE,
    CONTENT_STEP_END,
    InstrumentationPlan,
)

RELS = available_relations()
PARAM, TENSOR = "fw.Parameter", "fw.Tensor"  # variable types as an adapter names them
STEP, ZERO, BACKWARD = "fw.Optimizer.step", "fw.Optimizer.zero_grad", "fw.Tensor.backward"


def inv(relation: str, params: dict[str, Any], *conj: Clause) -> Invariant:
    pre = Precondition(any_of=[list(conj)]) if conj else Precondition()
    return Invariant(id=f"{relation}-{len(params)}-{len(conj)}", relation=relation,
                     params=params, precondition=pre)


def const(field: str, *values: Any) -> Clause:
    return Clause(kind="constant", field=field, values=list(values))


def var(name: str, vtype: str, is_param: bool, dtype: str = "float32") -> dict[str, Any]:
    return {"name": name, "vtype": vtype, "is_param": is_param, "dtype": dtype,
            "device": "cpu"}


W = var("model.fc.weight", PARAM, True)
EXP_AVG = var("opt.state.model.fc.weight.exp_avg", TENSOR, False)
RUNNING = var("model.bn.running_mean", TENSOR, False)
COUNTER = var("model.bn.num_batches_tracked", TENSOR, False, "int64")

# An MLP-like set: the parameters change every step and at every optimizer step, gradients
# change every step, zero_grad resets and backward sets them, optimizer state keeps its flags.
MLP_LIKE = [
    inv("StepEvolution", {"attr": "data", "shape": "changes"}, const("var.is_param", True)),
    inv("StepEvolution", {"attr": "grad", "shape": "changes"}, const("var.is_param", True)),
    inv("EventContain", {"kind": "var", "api": STEP, "vtype": PARAM, "attr": "data",
                         "change": "changed"}),
    inv("EventContain", {"kind": "var", "api": ZERO, "vtype": PARAM, "attr": "grad",
                         "change": "to_none"}, Clause(kind="present", field="var.grad")),
    inv("EventContain", {"kind": "var", "api": BACKWARD, "vtype": PARAM, "attr": "grad",
                         "change": "set"}),
    inv("VarConstant", {"attr": "grad", "value": "<never set>",
                        "variables": [EXP_AVG["name"]]}),
    inv("VarConstant", {"attr": "dtype", "value": "float32", "variables": [EXP_AVG["name"]]}),
    inv("APISequence", {"kind": "precedes", "first": ZERO, "then": BACKWARD}),
]


def test_full_tracing_asks_for_all_content() -> None:
    plan = InstrumentationPlan()
    assert plan.full and plan.content is None
    for v in (W, EXP_AVG, RUNNING):
        assert plan.content_mode("data", v) == CONTENT_ALWAYS
        assert plan.content_mode("grad", v) == CONTENT_ALWAYS
    assert not plan.content_at_step_end()
    # a relation that does not say which content it compares gets all of it
    rels = {**RELS, "Vague": _Vague()}
    vague = compile_plan(MLP_LIKE + [inv("Vague", {})], rels)
    assert not vague.full and vague.content is None
    assert vague.content_mode("data", EXP_AVG) == CONTENT_ALWAYS


class _Vague(Relation):
    """A third-party relation that names variables but not which content it compares."""

    name = "Vague"
    description = "test"

    def infer(self, runs: Any) -> list[Invariant]:
        return []

    def checker(self, invariants: Any) -> Any:
        raise NotImplementedError

    def plan(self, invariant: Invariant) -> PlanPart:
        return PlanPart(variables={"*"}, attributes={"data"})


def test_mlp_like_set_needs_no_optimizer_state_content() -> None:
    plan = compile_plan(MLP_LIKE, RELS)
    assert not plan.full and plan.content is not None
    assert "*" in plan.variables  # every variable's state is still observed ...
    # ... but the optimizer state's content is never compared: flags and presence only
    assert plan.content_mode("data", EXP_AVG) == CONTENT_NONE
    assert plan.content_mode("grad", EXP_AVG) == CONTENT_NONE
    # parameters: data at every optimizer step, gradients only when a step ends
    assert plan.content_mode("data", W) == CONTENT_ALWAYS
    assert plan.content_mode("grad", W) == CONTENT_STEP_END
    assert plan.content_at_step_end()


def test_rules_follow_static_clauses_of_preconditions() -> None:
    running_excluded = inv(
        "EventContain", {"kind": "var", "api": STEP, "vtype": TENSOR, "attr": "data",
                         "change": "changed"},
        const("var.dtype", "float32"),
        Clause(kind="not_in", field="var.name", values=[RUNNING["name"]]),
        Clause(kind="absent", field="within:fw.Module.forward"))  # not static: ignored
    plan = compile_plan([running_excluded], RELS)
    assert plan.content_mode("data", EXP_AVG) == CONTENT_ALWAYS
    assert plan.content_mode("data", RUNNING) == CONTENT_NONE  # named exception
    assert plan.content_mode("data", COUNTER) == CONTENT_NONE  # int64
    assert plan.content_mode("data", W) == CONTENT_NONE  # another variable type
    # "every variable's data changes every step": all of them, at step ends
    every = compile_plan([inv("StepEvolution", {"attr": "data", "shape": "changes"})], RELS)
    for v in (W, EXP_AVG, RUNNING, COUNTER):
        assert every.content_mode("data", v) == CONTENT_STEP_END
        assert every.content_mode("grad", v) == CONTENT_NONE
    # an inverted precondition may accept anything: no narrowing
    inverted = inv("StepEvolution", {"attr": "grad", "shape": "changes"},
                   const("var.is_param", True))
    inverted.precondition.inverted = True
    assert compile_plan([inverted], RELS).content_mode("grad", EXP_AVG) == CONTENT_STEP_END


def test_reset_and_set_need_presence_only_and_union_takes_the_strongest() -> None:
    presence = [i for i in MLP_LIKE if i.relation in ("EventContain", "VarConstant")
                and i.params.get("change") != "changed"]
    plan = compile_plan(presence, RELS)
    assert plan.content == []
    assert plan.content_mode("grad", W) == CONTENT_NONE
    both = compile_plan(MLP_LIKE + [inv("EventContain", {
        "kind": "var", "api": "fw.clip_grad_norm_", "vtype": PARAM, "attr": "grad",
        "change": "changed"})], RELS)
    assert both.content_mode("grad", W) == CONTENT_ALWAYS  # compared across clipping too


def test_argument_content_only_for_apis_whose_argument_fingerprints_are_compared() -> None:
    fresh = inv("APIArgFresh", {"api": "fw.dropout", "arg": "key"})
    plan = compile_plan(MLP_LIKE + [fresh], RELS)
    assert plan.arg_content == ["fw.dropout"]
    assert plan.wants_arg_content("fw.dropout") and not plan.wants_arg_content(STEP)
    assert compile_plan(MLP_LIKE, RELS).arg_content == []
    assert InstrumentationPlan().wants_arg_content(STEP)  # full tracing: everything


def test_change_only_comparisons_may_be_answered_from_writes() -> None:
    # "changes every step" and "the step changes it" compare each variable with itself only
    plan = compile_plan(MLP_LIKE, RELS)
    assert plan.content_by_writes("data", W) and plan.content_by_writes("grad", W)
    # presence-only attributes have no rule at all: nothing to answer
    assert not plan.content_by_writes("data", EXP_AVG)
    assert not InstrumentationPlan().content_by_writes("data", W)  # full tracing: hashes
    # a relation comparing values across variables or ranks needs the content itself, and
    # one such rule wins over any number of change-only ones
    across = inv("Consistency", {"attr": "grad", "scope": "ranks"}, const("var.is_param", True))
    mixed = compile_plan(MLP_LIKE + [across], RELS)
    assert mixed.content_mode("grad", W) == CONTENT_STEP_END
    assert not mixed.content_by_writes("grad", W)
    assert mixed.content_by_writes("data", W)
    # an integer growing by one per step is a value, not a change
    plus_one = compile_plan([inv("StepEvolution", {"attr": "data", "shape": "plus_one"})], RELS)
    assert not plus_one.content_by_writes("data", COUNTER)
