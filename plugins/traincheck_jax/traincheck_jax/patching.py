"""Reversible attribute patches: every ``set`` is undone by ``restore``, in reverse order."""

from __future__ import annotations

from typing import Any

__all__ = ["Patches"]

_MISSING = object()


class Patches:
    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any]] = []

    def set(self, owner: Any, name: str, value: Any) -> None:
        """Replace ``owner.name`` (kept from the class ``__dict__``, so descriptors such as
        staticmethods are restored as they were)."""
        store = owner.__dict__ if isinstance(owner, type) else vars(owner)
        self._undo.append((owner, name, store.get(name, _MISSING)))
        setattr(owner, name, value)

    def restore(self) -> None:
        while self._undo:
            owner, name, old = self._undo.pop()
            if old is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)

    def __len__(self) -> int:
        return len(self._undo)
