"""Diagnosis: statement, likely causes per kind of invariant, user locations, version caveats."""

from __future__ import annotations

from test_check_support import (
    RELATIONS,
    equal_invariant,
    make_invariant,
    step_invariant,
    synthetic_records,
)

from traincheck_core.check.engine import CheckEngine
from traincheck_core.check.result import InvariantOutcome
from traincheck_core.invariants import Invariant, Violation
from traincheck_core.report.diagnosis import diagnose


def outcome_of(inv: Invariant, **kw) -> InvariantOutcome:
    engine = CheckEngine([inv], RELATIONS)
    engine.feed_records(synthetic_records(**kw))
    engine.finish()
    (o,) = engine.result().outcomes
    return o


def test_frozen_parameters_statement_causes_location() -> None:
    inv = step_invariant()
    d = diagnose(outcome_of(inv, steps=6, frozen_from=2), inv)
    assert d.statement.startswith("Expected: opt.step() changes model.w1, model.w2. "
                                  "At step 2 on rank 0: opt.step() changed none of model.w2.")
    assert "This happened in 4 steps (4 violations)." in d.statement
    assert d.causes[0] == "parameters frozen by mistake"  # the invariant's own hint first
    text = " ".join(d.causes)
    for cause in ("requires_grad=False", "wrong parameters", "gradients do not flow",
                  "learning rate is 0"):
        assert cause in text
    assert "replicas" not in text  # nothing about data parallelism
    assert d.locations == ["train.py:42"]


def test_replica_divergence_causes_and_ranks() -> None:
    inv = equal_invariant(world=2)
    inv.text = "model.w1 is equal on every rank after each step (DDP replicas)"
    d = diagnose(outcome_of(inv, steps=6, ranks=2, diverge_from=3), inv)
    assert "At step 3 on rank 1:" in d.statement
    assert any("replicas diverged" in c for c in d.causes)
    assert any("SyncBatchNorm" in c for c in d.causes)
    assert not any("learning rate" in c for c in d.causes)


def test_zero_grad_and_eval_knowledge() -> None:
    zg = make_invariant("api_changes", {"api": "torch.optim.Optimizer.zero_grad",
                                        "attr": "grad"}, text="zero_grad() resets .grad")
    o = InvariantOutcome(id=zg.id, relation=zg.relation, text=zg.text, status="violated")
    assert any("zero_grad() is missing" in c for c in diagnose(o, zg).causes)
    ev = make_invariant("api_attr", {"api": "torch.nn.Module.forward", "attr": "training",
                                     "value": False}, text="forward in eval runs with "
                        "training=False")
    o = InvariantOutcome(id=ev.id, relation=ev.relation, text=ev.text, status="violated")
    assert any("model.eval() not called" in c for c in diagnose(o, ev).causes)


def test_unknown_kind_gets_generic_advice_and_evidence_locations() -> None:
    inv = make_invariant("custom", {"x": 1}, text="custom rule")
    v = Violation(invariant=inv.id, relation="custom", message="it broke", step=7, rank=0,
                  evidence=[{"loc": "model.py:9"}, {"loc": "train.py:3"}], loc="train.py:3")
    o = InvariantOutcome(id=inv.id, relation="custom", text=inv.text, status="violated",
                         firsts=[v], occurrences=1, steps_violated=1, ranks=[0], first_step=7)
    d = diagnose(o, inv)
    assert d.statement == "Expected: custom rule. At step 7 on rank 0: it broke."
    assert d.causes and "traincheck infer" in d.causes[0]
    assert d.locations == ["train.py:3", "model.py:9"]


def test_framework_version_caveat() -> None:
    inv = step_invariant()
    inv.frameworks = {"torch": ["1.13.1"]}
    o = InvariantOutcome(id=inv.id, relation=inv.relation, status="violated")
    (caveat,) = diagnose(o, inv, {"torch": ["2.3.0"]}).caveats
    assert "learned with torch 1.13.1 but this run uses torch 2.3.0" in caveat
    assert diagnose(o, inv, {"torch": ["1.13.1"]}).caveats == []
