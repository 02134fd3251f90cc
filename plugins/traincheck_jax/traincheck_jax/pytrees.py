"""Stable names for pytree leaves: ``params/Dense_0/kernel``, ``opt_state/0/mu/w``.

A leaf is a tracked variable when its path passes through a segment that names model or
optimizer state (``params``, ``opt_state``, ``batch_stats``) or when it sits in a function
argument whose name says so (``params``, ``head_params``, ``opt_state``). The name starts at
that segment, so the same parameter gets the same name whether it travels inside a Flax
``TrainState``, a plain dict or a tuple, and across runs and ranks.
"""

from __future__ import annotations

from typing import Any

__all__ = ["VAR_SEGMENTS", "segment", "var_root", "leaf_name", "flatten_vars"]

VAR_SEGMENTS = ("params", "opt_state", "batch_stats")


def segment(key: Any) -> str:
    """One path entry as text (DictKey, GetAttrKey, SequenceKey, FlattenedIndexKey)."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def var_root(name: str) -> str | None:
    """The variable kind an argument name implies (``head_params`` -> ``head_params``)."""
    low = name.lower()
    if "param" in low or "opt_state" in low or low in ("batch_stats", "weights"):
        return name
    return None


def leaf_name(parts: list[str], root: str | None) -> str | None:
    """The variable name of a leaf with path ``parts``, or ``None`` if it is not one."""
    if len(parts) > 1 and parts[-1] == "value":  # an NNX Variable's payload
        parts = parts[:-1]
    for i, p in enumerate(parts):
        if p in VAR_SEGMENTS:
            parts = parts[i:]
            while len(parts) > 1 and parts[1] == parts[0]:  # TrainState.params['params']
                parts = parts[1:]
            return "/".join(parts)
    if root is not None:
        return "/".join([root, *parts])
    return None


def flatten_vars(jtu: Any, tree: Any, root: str | None, is_leaf: Any = None
                 ) -> list[tuple[str, Any]]:
    """``(name, leaf)`` for the tracked-variable leaves of ``tree``."""
    out: list[tuple[str, Any]] = []
    leaves, _ = jtu.tree_flatten_with_path(tree, is_leaf=is_leaf)
    for path, leaf in leaves:
        name = leaf_name([segment(k) for k in path], root)
        if name is not None and hasattr(leaf, "shape"):
            out.append((name, leaf))
    return out
