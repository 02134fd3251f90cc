"""The contract every relation template implements, for inference and for checking.

A relation template describes a family of invariants (e.g. "every call of API A changes the
variables it touches"). It works on the generic analysis records of
:mod:`traincheck_core.analysis` and never names a framework in its logic.

* Inference: :meth:`Relation.infer` receives every reference run's items (grouped per run)
  and returns invariants with preconditions (see :mod:`traincheck_core.preconditions`).
* Checking: :meth:`Relation.checker` returns a :class:`RelationChecker` that consumes the same
  items incrementally and returns violations as soon as they are certain.
* Planning: :meth:`Relation.plan` tells which APIs and variables an invariant needs, so online
  checking instruments only those.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ..analysis.assembler import Item, ProcInfo
from ..invariants import Invariant, Precondition, Violation
from ..preconditions import NAME_FIELD
from ..session import ContentRule

__all__ = ["Relation", "RelationChecker", "RunItems", "PlanPart", "TriggerStats",
           "content_rules", "STATIC_VAR_FIELDS"]

#: Variable fields a content rule may select on: fixed for a variable's life in practice, and
#: known to an adapter before it computes any fingerprint.
STATIC_VAR_FIELDS = frozenset({"name", "vtype", "is_param", "dtype", "device"})


@dataclass
class RunItems:
    """All analysis items of one reference run (every process of it), in time order."""

    run_id: str
    items: list[Item]
    procs: dict[int, ProcInfo]
    frameworks: dict[str, str] = field(default_factory=dict)


@dataclass
class PlanPart:
    """What one invariant needs observed."""

    apis: set[str] = field(default_factory=set)
    variables: set[str] = field(default_factory=set)
    attributes: set[str] = field(default_factory=set)
    #: which variables' content (fingerprints) the invariant compares; ``None``: it cannot
    #: say, so every variable's content of the attributes it names (see ``ContentRule``)
    content: list[ContentRule] | None = None
    #: APIs whose argument or return-value content (tensor fingerprints) it compares
    arg_content: set[str] = field(default_factory=set)


def content_rules(attr: str, pre: Precondition, *, step_end: bool = False,
                  vtype: str | None = None, changes: bool = False) -> list[ContentRule]:
    """The variables whose content of ``attr`` an invariant with precondition ``pre`` may
    compare: one rule per conjunction of ``pre``, keeping only its clauses on static variable
    fields (``constant`` clauses, and ``not_in`` on the name). Every other clause is taken as
    possibly true, so the rules cover at least every variable the precondition can accept.
    ``vtype``: the invariant is about variables of that type only. ``changes``: it asks only
    whether a variable's value changed from its own previous one (``ContentRule.changes``)."""
    base = {"vtype": [vtype]} if vtype else {}
    if pre.inverted or not pre.any_of:
        return [ContentRule(attr=attr, where=base, step_end=step_end, changes=changes)]
    out = []
    for conj in pre.any_of:
        where, exclude = dict(base), []
        for c in conj:
            key = c.field.removeprefix("var.")
            if c.field.startswith("var.") and key in STATIC_VAR_FIELDS and c.kind == "constant":
                if key in where:  # both must hold: the values in common
                    where[key] = [v for v in where[key] if v in c.values]
                else:
                    where[key] = list(c.values)
            elif c.field == NAME_FIELD and c.kind == "not_in":
                exclude += list(c.values)
        out.append(ContentRule(attr=attr, where=where, exclude=sorted(exclude),
                               step_end=step_end, changes=changes))
    return out


@dataclass
class TriggerStats:
    """How often an invariant's precondition held while checking (0: never triggered), and
    why it did not when it did not."""

    checked: int = 0
    violated: int = 0
    why_not: str = ""


class RelationChecker(ABC):
    """Incremental checker for a set of invariants of one relation."""

    @abstractmethod
    def feed(self, item: Item) -> Iterable[Violation]:
        """Consume one analysis item; return violations that are now certain."""

    def finish(self) -> Iterable[Violation]:
        """The stream ended: report what is still pending."""
        return ()

    @abstractmethod
    def stats(self) -> dict[str, TriggerStats]:
        """Per invariant id: how often it was checked and violated."""


class Relation(ABC):
    """A relation template. Subclasses set ``name`` and ``description``."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: True when an invariant of this relation compares the processes of a run with each
    #: other, so no single process can check it alone (online, the launcher checks it).
    cross_process: ClassVar[bool] = False

    @abstractmethod
    def infer(self, runs: Sequence[RunItems]) -> list[Invariant]:
        """Hypothesize, collect examples and keep the invariants with a precondition."""

    @abstractmethod
    def checker(self, invariants: Sequence[Invariant]) -> RelationChecker:
        """A checker for ``invariants`` (all of this relation)."""

    def plan(self, invariant: Invariant) -> PlanPart:
        """What ``invariant`` needs observed; default: everything (an empty part)."""
        return PlanPart()
