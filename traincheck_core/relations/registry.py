"""All relation templates: the built-ins plus those plugins contribute."""

from __future__ import annotations

import logging
from typing import Any

from .api_arg import APIArg
from .api_arg_fresh import APIArgFresh
from .api_arg_value import APIArgValue
from .api_output import APIOutput
from .api_repeat import APIRepeat
from .api_sequence import APISequence
from .base import Relation
from .consistency import Consistency
from .event_contain import EventContain
from .step_evolution import StepEvolution
from .var_constant import VarConstant
from .var_continuity import VarContinuity

__all__ = ["builtin_relations", "all_relations"]

logger = logging.getLogger("traincheck")


def builtin_relations() -> list[Relation]:
    return [APIArg(), APIArgFresh(), APIArgValue(), APIOutput(), APISequence(), Consistency(),
            EventContain(), StepEvolution(), VarConstant(), APIRepeat(),
            VarContinuity()]


def all_relations(pm: Any = None) -> list[Relation]:
    """Built-in templates, then plugin templates (``traincheck_relation_templates``); a plugin
    template with a built-in's name replaces it. Order is by name, so results are stable."""
    found: dict[str, Relation] = {r.name: r for r in builtin_relations()}
    if pm is not None:
        try:
            parts = pm.hook.traincheck_relation_templates()
        except Exception as exc:  # a broken plugin must not stop inference or checking
            logger.warning("traincheck: a plugin's relation templates failed to load: %s", exc)
            parts = []
        for part in parts:
            for rel in part or []:
                if isinstance(rel, Relation):
                    found[rel.name] = rel
                else:
                    logger.warning("traincheck: ignoring relation template %r: not a Relation",
                                   rel)
    return [found[n] for n in sorted(found)]
