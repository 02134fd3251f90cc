"""Reversible attribute patches with wrapt (every patch remembers what it replaced)."""

from __future__ import annotations

from typing import Any

import wrapt

__all__ = ["Patcher"]


class Patcher:
    def __init__(self) -> None:
        self._done: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, raw: Any, wrapper: Any) -> None:
        """Replace ``owner.attr`` (currently ``raw``, as found in ``vars(owner)``) by a wrapt
        FunctionWrapper calling ``wrapper(wrapped, instance, args, kwargs)``."""
        wrapt.wrap_function_wrapper(owner, attr, wrapper)
        self._done.append((owner, attr, raw))

    def undo(self) -> None:
        """Restore every patched attribute, last patch first."""
        while self._done:
            owner, attr, raw = self._done.pop()
            setattr(owner, attr, raw)

    def __len__(self) -> int:
        return len(self._done)
