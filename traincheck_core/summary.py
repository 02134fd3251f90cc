"""Summarize arbitrary Python values into bounded, typed :data:`Summary` records.

Adapters register summarizers for their own types (tensors, arrays, pytrees) through the
``traincheck_value_summarizers`` hook; the core looks them up by exact type, then along the
MRO, caching the result per type so the common case is one dict lookup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from .events import MapSummary, ObjSummary, Scalar, SeqSummary, Summary

__all__ = ["Summarizer", "SummaryRegistry", "fingerprint_bytes", "type_name", "MAX_ITEMS",
           "MAX_STR"]

#: Containers keep at most this many items; strings at most this many characters.
MAX_ITEMS = 8
MAX_STR = 200

Summarizer = Callable[[Any], Summary]


def type_name(obj: Any) -> str:
    """``module.QualName`` of ``obj``'s type (builtins without the module)."""
    t = type(obj)
    mod = t.__module__
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def fingerprint_bytes(buf: Any) -> str:
    """A 64-bit content fingerprint (hex) of a bytes-like buffer, covering every byte and its
    position. Adapters pass a zero-copy view of a tensor's memory."""
    return hashlib.blake2b(buf, digest_size=8).hexdigest()


class SummaryRegistry:
    """Maps types to summarizers; falls back to generic container and object summaries."""

    def __init__(self) -> None:
        self._by_type: dict[type, Summarizer | None] = {}
        self._registered: dict[type, Summarizer] = {}
        self._by_name: dict[str, Summarizer] = {}

    def register(self, key: type | str, fn: Summarizer) -> None:
        """Register ``fn`` for a type, or for a fully qualified type name (so an adapter need
        not import its framework to declare it)."""
        if isinstance(key, str):
            self._by_name[key] = fn
        else:
            self._registered[key] = fn
        self._by_type.clear()

    def _lookup(self, t: type) -> Summarizer | None:
        try:
            return self._by_type[t]
        except KeyError:
            pass
        fn = None
        for base in t.__mro__:
            fn = self._registered.get(base) or self._by_name.get(
                f"{base.__module__}.{base.__qualname__}")
            if fn is not None:
                break
        self._by_type[t] = fn
        return fn

    def summarize(self, value: Any, depth: int = 2) -> Summary:
        """A bounded summary of ``value``; never raises (unknown objects become their type)."""
        if value is None or isinstance(value, (bool, int, float)):
            return Scalar(value)
        if isinstance(value, str):
            return Scalar(value if len(value) <= MAX_STR else value[:MAX_STR] + "…")
        fn = self._lookup(type(value))
        if fn is not None:
            try:
                return fn(value)
            except Exception:
                return ObjSummary(type_name(value))
        if depth > 0 and isinstance(value, (list, tuple, set, frozenset)):
            items = list(value)[:MAX_ITEMS] if not isinstance(value, (set, frozenset)) else []
            return SeqSummary(type_name(value), len(value),
                              [self.summarize(v, depth - 1) for v in items])
        if depth > 0 and isinstance(value, Mapping):
            out: dict[str, Summary] = {}
            for i, (k, v) in enumerate(value.items()):
                if i >= MAX_ITEMS:
                    break
                out[str(k)] = self.summarize(v, depth - 1)
            return MapSummary(type_name(value), len(value), out)
        return ObjSummary(type_name(value))
