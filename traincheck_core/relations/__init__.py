"""Relation templates: families of invariants, each with inference and an incremental checker."""

from .base import PlanPart, Relation, RelationChecker, RunItems, TriggerStats

__all__ = ["PlanPart", "Relation", "RelationChecker", "RunItems", "TriggerStats"]
