"""Stable names for pytree leaves: ``params/Dense_0/kernel``, ``opt_state/0/mu/w``.

A leaf is a tracked variable when its path passes through a segment that names model or
optimizer state (``params``, ``opt_state``, ``batch_stats``) or when it sits in a function
argument whose name says so (``params``, ``head_params``, ``opt_state``). The name starts at
that segment, so the same parameter gets the same name whether it travels inside a Flax
``TrainState``, a plain dict or a tuple, and across runs and ranks.
"""

from __future__ import annotations

from typing import Any

__all__ = ["VAR_SEGMENTS", "segment", "var_root", "leaf_name", "flatten_vars", "VarNamer"]

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


def flatten_vars(jtu: Any, tree: Any, root: str | None) -> list[tuple[str, Any]]:
    """``(name, leaf)`` for the tracked-variable leaves of ``tree`` (uncached)."""
    out: list[tuple[str, Any]] = []
    leaves, _ = jtu.tree_flatten_with_path(tree)
    for path, leaf in leaves:
        name = leaf_name([segment(k) for k in path], root)
        if name is not None and hasattr(leaf, "shape"):
            out.append((name, leaf))
    return out


class VarNamer:
    """:func:`flatten_vars` with the leaf names remembered per (pytree structure, root).

    A leaf's path, hence its name, is fixed by the tree's structure (``PyTreeDef``), so a
    training loop that passes the same structure every step names its leaves once; each
    later call only flattens (no path objects, no string building).
    """

    MAX_ENTRIES = 1024

    def __init__(self, jtu: Any) -> None:
        self.jtu = jtu
        self._names: dict[tuple[Any, str | None], list[tuple[int, str]]] = {}

    def pairs(self, tree: Any, root: str | None) -> list[tuple[str, Any]]:
        leaves, treedef = self.jtu.tree_flatten(tree)
        return self.pairs_flat(tree, leaves, treedef, root)

    def pairs_flat(self, tree: Any, leaves: list[Any], treedef: Any, root: str | None
                   ) -> list[tuple[str, Any]]:
        """The pairs of ``tree``, already flattened to ``leaves`` with ``treedef``."""
        try:
            names = self._names.get((treedef, root))
        except (TypeError, ValueError):  # static pytree data that cannot be hashed or
            # compared (arrays): name every time
            return flatten_vars(self.jtu, tree, root)
        if names is None:
            names = self._learn(tree, treedef, root)
        return [(name, leaves[i]) for i, name in names if hasattr(leaves[i], "shape")]

    def _learn(self, tree: Any, treedef: Any, root: str | None) -> list[tuple[int, str]]:
        paths, _ = self.jtu.tree_flatten_with_path(tree)
        names = [(i, name) for i, (path, _leaf) in enumerate(paths)
                 if (name := leaf_name([segment(k) for k in path], root)) is not None]
        if len(self._names) >= self.MAX_ENTRIES:
            self._names.clear()
        self._names[(treedef, root)] = names
        return names
