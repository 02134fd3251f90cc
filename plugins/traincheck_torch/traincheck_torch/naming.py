"""Stable names for models and optimizers, told from the user's own variable names.

A model is named after the variable or attribute that holds it in the user's code (``model``,
``net``, ``self.generator`` -> ``generator``), found by looking at the local variables, the
attributes of ``self`` and the globals of the nearest user-code frames. When no name can be
told the model is ``model`` (then ``model_2``, ``model_3`` in order of discovery).
"""

from __future__ import annotations

from typing import Any

from .calls import user_frames

__all__ = ["find_name", "unwrap"]


def unwrap(obj: Any) -> Any:
    """The module inside DDP/FSDP/DataParallel (``.module``) and ``torch.compile``
    (``._orig_mod``) wrappers."""
    for _ in range(4):
        name = type(obj).__name__
        if name in _WRAPPERS:
            # ``.module``: a submodule of DDP/DataParallel, a property of FSDP (whose child is
            # registered as ``_fsdp_wrapped_module``)
            inner = getattr(obj, "module", None)
            if inner is None:
                return obj
            obj = inner
        elif name == "OptimizedModule":
            obj = obj._orig_mod
        else:
            return obj
    return obj


_WRAPPERS = ("DistributedDataParallel", "FullyShardedDataParallel", "DataParallel")


def _holds(value: Any, target: Any) -> bool:
    if value is target:
        return True
    name = type(value).__name__
    return (name in _WRAPPERS or name == "OptimizedModule") and unwrap(value) is target


def find_name(target: Any, depth: int = 2) -> str | None:
    """The variable name that holds ``target`` (or a wrapper of it) in nearby user code."""
    for frame in user_frames(depth, 4):
        local = frame.f_locals
        for k, v in local.items():
            if not k.startswith(".") and _holds(v, target):
                return k
        me = local.get("self")
        attrs = getattr(me, "__dict__", None)
        if isinstance(attrs, dict):
            for k, v in list(attrs.items()):
                if _holds(v, target):
                    return k.lstrip("_") or k
            for k, v in attrs.get("_modules", {}).items() if "_modules" in attrs else ():
                if _holds(v, target):
                    return k
        for k, v in frame.f_globals.items():
            if not k.startswith("__") and _holds(v, target):
                return k
    return None


def candidates(module_type: type, depth: int = 2) -> list[tuple[str, Any]]:
    """``(name, object)`` of every instance of ``module_type`` in nearby user-code frames."""
    out: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def add(k: str, v: Any) -> None:
        if isinstance(v, module_type) and id(v) not in seen:
            seen.add(id(v))
            out.append((k, v))

    for frame in user_frames(depth, 4):
        local = frame.f_locals
        for k, v in local.items():
            add(k, v)
        attrs = getattr(local.get("self"), "__dict__", None)
        if isinstance(attrs, dict):
            for k, v in list(attrs.items()):
                add(k.lstrip("_") or k, v)
        for k, v in list(frame.f_globals.items()):
            if not k.startswith("__"):
                add(k, v)
    return out
