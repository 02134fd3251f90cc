"""Diagnosis: what a violated invariant means, what usually causes it, where in user code.

The statement is built from the invariant and its first violations; the likely causes come
from the invariant's own hint plus relation-specific knowledge below, chosen by what the
invariant is about (the relation and the APIs / variables it names), never by a framework
import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..check.result import InvariantOutcome
from ..invariants import Invariant

__all__ = ["Diagnosis", "diagnose", "KNOWLEDGE"]


@dataclass
class Diagnosis:
    invariant: str
    statement: str
    causes: list[str] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Rule:
    """Causes that apply when every regex in ``all_of`` matches the invariant's subject."""

    all_of: tuple[str, ...]
    causes: tuple[str, ...]


# Relation-specific knowledge: what this kind of violation has meant in real silent bugs.
KNOWLEDGE: tuple[_Rule, ...] = (
    _Rule((r"step|update", r"chang|updat|differ|modif"), (
        "parameters were frozen by mistake (PyTorch: requires_grad=False; JAX: gradients "
        "taken with respect to the wrong argument, or a frozen copy was trained)",
        "the optimizer was given the wrong parameters (another model's, a stale list, an "
        "empty parameter group)",
        "gradients do not flow to these parameters (detach() / stop_gradient, a no-grad "
        "context, the loss does not depend on them, or grads are None)",
        "the learning rate is 0 (a scheduler or warm-up drove it to zero)",
        "the update is skipped (a gradient scaler skipping steps on inf/NaN, clipping to 0, "
        "or the computed update is never applied to the parameters)",
    )),
    _Rule((r"zero_grad|set_to_none|accumulat",), (
        "zero_grad() is missing, so gradients accumulate across steps",
        "zero_grad() is called at the wrong place (between backward() and step())",
        "gradient accumulation was intended but the accumulation boundary is off",
    )),
    _Rule((r"\beval\b|\.train\b|\btraining\b|dropout|batchnorm|\bstage\b",), (
        "evaluation runs in training mode (PyTorch: model.eval() not called; Flax: "
        "deterministic=False / train=True), so dropout and batch-norm stay active",
        "training mode was not restored after evaluation (PyTorch: model.train())",
        "a sub-module was switched to a different mode than its parent",
    )),
    _Rule((r"\brank|replica|all_?reduce|\bddp\b|distributed|data.parallel",), (
        "data-parallel replicas diverged: the model is not wrapped for data parallelism, or "
        "gradient all-reduce is skipped (no_sync() misused)",
        "ranks initialized with different seeds and the initial weights were not broadcast",
        "rank-specific code modifies parameters or buffers (e.g. only rank 0 loads a "
        "checkpoint or clips gradients)",
        "buffers are not synchronized (BatchNorm without SyncBatchNorm, broadcast_buffers off)",
    )),
    _Rule((r"order|\bbefore\b|precede|sequence",), (
        "the call order in the training loop changed (an API is called too early, too late "
        "or not at all)",
    )),
    _Rule((r"\bnan\b|\binf\b|isfinite|overflow",), (
        "numerical instability: a too-high learning rate, a missing loss scaling, or a "
        "division by zero",
    )),
)

_GENERIC = ("the program uses this API differently from the reference runs; if the change "
            "is intended, re-run `traincheck infer` with a healthy run of the new program",)


def _subject(inv: Invariant | None, outcome: InvariantOutcome) -> str:
    """Lower-cased text the rules look at: relation, parameters, statement."""
    parts: list[str] = [outcome.relation, outcome.text]
    if inv is not None:
        parts += [inv.relation, inv.text, _flatten(inv.params)]
    return " ".join(parts).lower()


def _flatten(value: Any) -> str:
    if isinstance(value, Mapping):
        return " ".join(f"{k} {_flatten(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return " ".join(_flatten(v) for v in value)
    return str(value)


def _split_hint(hint: str) -> list[str]:
    return [h.strip().rstrip(".") for h in re.split(r"[;\n]|(?<=\.)\s+", hint) if h.strip()]


def likely_causes(inv: Invariant | None, outcome: InvariantOutcome) -> list[str]:
    causes = _split_hint(outcome.hint or (inv.hint if inv else ""))
    subject = _subject(inv, outcome)
    for rule in KNOWLEDGE:
        if all(re.search(rx, subject) for rx in rule.all_of):
            causes += [c for c in rule.causes if c not in causes]
    return causes or list(_GENERIC)


def _statement(inv: Invariant | None, o: InvariantOutcome) -> str:
    first = min(o.firsts, key=lambda v: (v.step if v.step is not None else 1 << 60),
                default=None)
    expected = o.text or (inv.text if inv else "") or f"a {o.relation} invariant"
    where = []
    if first is not None and first.step is not None:
        where.append(f"at step {first.step}")
    if o.ranks:
        where.append(f"on rank{'s' if len(o.ranks) > 1 else ''} "
                     f"{', '.join(map(str, o.ranks))}")
    what = first.message if first is not None else "it was violated"
    what = what if what.endswith((".", "!", "?")) else what + "."
    text = f"Expected: {expected.rstrip('.')}. {' '.join(where).capitalize() or 'Here'}: {what}"
    if o.steps_violated > 1:
        text += f" This happened in {o.steps_violated} steps ({o.occurrences} violations)."
    elif o.occurrences > 1:
        text += f" ({o.occurrences} violations)."
    return text.strip()


def _locations(o: InvariantOutcome) -> list[str]:
    locs: list[str] = []
    for v in o.firsts:
        for loc in [v.loc] + [e.get("loc") for e in v.evidence if isinstance(e, dict)]:
            if isinstance(loc, str) and loc and loc not in locs:
                locs.append(loc)
    return locs


def _caveats(inv: Invariant | None, run_frameworks: Mapping[str, list[str]]) -> list[str]:
    """Framework semantics drift: say when the run's versions were never seen in reference."""
    out: list[str] = []
    if inv is None:
        return out
    for fw, learned in inv.frameworks.items():
        now = [v for v in run_frameworks.get(fw, []) if v not in learned]
        if learned and now:
            out.append(f"learned with {fw} {', '.join(learned)} but this run uses {fw} "
                       f"{', '.join(now)}: the API's semantics may have changed, so this "
                       "invariant may not apply")
    return out


def diagnose(outcome: InvariantOutcome, invariant: Invariant | None = None,
             run_frameworks: Mapping[str, list[str]] | None = None) -> Diagnosis:
    """A plain-language diagnosis of one violated invariant."""
    return Diagnosis(invariant=outcome.id, statement=_statement(invariant, outcome),
                     causes=likely_causes(invariant, outcome), locations=_locations(outcome),
                     caveats=_caveats(invariant, run_frameworks or {}))
