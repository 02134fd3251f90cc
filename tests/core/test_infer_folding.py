"""Inference folds repeated examples inside the collectors (EventContain, StepEvolution,
VarConstant) for speed. Folding must not change what is accumulated: the same distinct
examples with the same counts, the same number of recorded steps, the same hypotheses, and so
the same invariants as one observation per example (the checking collectors' detail mode)."""

from __future__ import annotations

from collections import Counter

import pytest

from traincheck_core.analysis.assembler import VarChange
from traincheck_core.infer.synth import TraceBuilder, run_items, training_run
from traincheck_core.relations.common import Accumulator, Obs
from traincheck_core.relations.event_contain import EventContain
from traincheck_core.relations.step_evolution import StepEvolution
from traincheck_core.relations.var_constant import _FAMILY, VarConstant, observed_values


def _run(counter: bool = True):
    # with the optimizer's step counter the process's variable rows differ at every step
    # (little folds across steps); without it the same calls fold across steps
    return run_items(training_run(TraceBuilder(), steps=6, params=3, frozen=1, counter=counter))


def _accumulate(col, items) -> Accumulator:
    acc = Accumulator()
    for item in items:
        acc.add("r", col.feed(item))
    acc.add("r", col.finish())
    return acc


def _summary(acc: Accumulator) -> tuple[dict, dict, dict]:
    counts = {f: {k: e[0] for k, e in ex.items()} for f, ex in acc.examples.items()}
    steps = {f: {k: len(e[1]) for k, e in ex.items()} for f, ex in acc.examples.items()}
    hyps = {f: {lab: (sorted(h.runs), sorted(h.subjects)) for lab, h in hs.items()}
            for f, hs in acc.hyps.items() if hs}
    return counts, steps, hyps


@pytest.mark.parametrize("counter", [True, False])
def test_event_contain_folded_equals_one_example_per_variable_and_call(counter):
    run = _run(counter)
    rel = EventContain()
    col = rel.collector()
    folded = Accumulator()
    for item in run.items:
        folded.add("r", col.feed(item))
    calls = [n for _, n, _ in col._idle.values()]
    folded.add("r", col.finish())
    if not counter:
        assert max(calls) > 1  # calls of several steps were folded together
    single = _accumulate(rel.collector(detail=True), run.items)
    assert _summary(folded) == _summary(single)
    got = [(i.id, i.support) for i in rel.decide(folded, {})]
    assert got and got == [(i.id, i.support) for i in rel.decide(single, {})]


@pytest.mark.parametrize("counter", [True, False])
def test_step_evolution_folded_equals_one_example_per_step(counter):
    run = _run(counter)
    rel = StepEvolution()
    folded = _accumulate(rel.collector(), run.items)
    single = _accumulate(rel.collector(detail=True), run.items)
    assert _summary(folded) == _summary(single)
    got = [(i.id, i.support) for i in rel.decide(folded, {})]
    assert got and got == [(i.id, i.support) for i in rel.decide(single, {})]


def test_var_constant_folded_equals_one_example_per_state():
    run = _run()
    folded = _accumulate(VarConstant().collector(), run.items)
    expected: Counter = Counter()
    single = Accumulator()
    for item in run.items:
        if isinstance(item, VarChange):
            obs = [Obs(family=(_FAMILY, a), rows=(), labels=frozenset({(item.name, v)}),
                       subject=item.name, step=item.meta.get("step"))
                   for a, v in observed_values(item.after)]
            expected.update((o.family, o.labels) for o in obs)
            single.add("r", obs)
    assert _summary(folded) == _summary(single)
    assert {(f, k[1]): n for f, ex in _summary(folded)[0].items()
            for k, n in ex.items()} == dict(expected)
