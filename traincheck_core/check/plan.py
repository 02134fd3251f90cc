"""Find the relation templates of deployed invariants and compile what they need observed."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..invariants import Invariant
from ..relations.base import Relation
from ..session import ContentRule, InstrumentationPlan

__all__ = ["available_relations", "compile_plan", "matches"]

logger = logging.getLogger("traincheck")


def available_relations(pm: Any = None) -> dict[str, Relation]:
    """Relation templates by name: the built-in registry plus those plugins contribute."""
    found: list[Any] = []
    try:
        registry = importlib.import_module("traincheck_core.relations.registry")
    except ModuleNotFoundError as exc:
        if exc.name != "traincheck_core.relations.registry":
            raise
        registry = None
    if registry is not None:
        rels = registry.all_relations(pm)
        found += list(rels.values()) if isinstance(rels, Mapping) else list(rels)
    elif pm is not None:
        for part in pm.hook.traincheck_relation_templates():
            found += list(part or [])
    return {r.name: r for r in found if isinstance(r, Relation)}


def compile_plan(invariants: Sequence[Invariant], relations: Mapping[str, Relation]
                 ) -> InstrumentationPlan:
    """The union of the plan parts of every checkable invariant.

    A relation that returns an empty part needs everything observed, so the plan becomes
    ``full``. Invariants of unknown relations need nothing (they cannot be checked anyway).
    """
    apis: set[str] = set()
    variables: set[str] = set()
    attributes: set[str] = set()
    content: list[ContentRule] | None = []
    arg_content: set[str] = set()
    full = False
    for inv in invariants:
        rel = relations.get(inv.relation)
        if rel is None:
            continue
        part = rel.plan(inv)
        if not (part.apis or part.variables or part.attributes):
            full = True
        apis |= part.apis
        variables |= part.variables
        attributes |= part.attributes
        arg_content |= part.arg_content
        if part.variables or part.attributes:
            content = _add_content(content, part.content)
    return InstrumentationPlan(full=full, apis=sorted(apis), variables=sorted(variables),
                               attributes=sorted(attributes), every=1,
                               content=None if full else content,
                               arg_content=None if full else sorted(arg_content))


def _add_content(content: list[ContentRule] | None, more: list[ContentRule] | None
                 ) -> list[ContentRule] | None:
    """The union of two sets of content rules; ``None`` (all content) absorbs everything."""
    if content is None or more is None:
        return None
    out = list(content)
    for rule in more:
        if rule not in out:
            out.append(rule)
    return out


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Plan name matching: exact, or a prefix when the pattern ends in ``*``."""
    for p in patterns:
        if p == name or (p.endswith("*") and name.startswith(p[:-1])):
            return True
    return False


def load_relations(plugins: list[str] | None = None) -> dict[str, Relation]:
    """Relation templates with the named plugins loaded (all installed ones when empty)."""
    from ..plugins.manager import make_plugin_manager

    pm, _ = make_plugin_manager(plugins or None)
    return available_relations(pm)
