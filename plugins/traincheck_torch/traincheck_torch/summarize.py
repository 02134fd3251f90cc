"""Bounded summaries of call arguments and of ``torch.Tensor`` values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from traincheck_core import (
    MapSummary,
    ObjSummary,
    Scalar,
    SeqSummary,
    Session,
    Summary,
    TensorSummary,
    type_name,
)

from .fingerprint import fingerprint

__all__ = ["tensor_summary", "summarize_value", "dtype_name", "device_name",
           "ARG_FP_MAX_ELEMENTS"]

#: Tensors passed as call arguments are fingerprinted only up to this many elements (losses,
#: scalars, small masks); activations are summarized by type, shape, dtype and device only.
#: Tracked variables (parameters, gradients, buffers, optimizer state) are always fingerprinted.
ARG_FP_MAX_ELEMENTS = 4096
MAX_ITEMS = 8


def dtype_name(dtype: Any) -> str:
    """``float32`` for ``torch.float32`` (cached: a dict lookup instead of building a string)."""
    try:
        return _DTYPE_NAMES[dtype]
    except KeyError:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
        return name


_DTYPE_NAMES: dict[Any, str] = {}


def device_name(t: Any) -> str:
    """``str(t.device)``; CPU tensors skip building a device object."""
    return "cpu" if t.is_cpu else str(t.device)


def tensor_summary(t: Any, with_fp: bool = True) -> TensorSummary:
    """Summary of a tensor: type, shape, dtype, device, fingerprint and ``requires_grad``.
    Without a fingerprint, tensors alike in all of these share one summary object (a
    training loop passes activations of the same few kinds to every layer at every step;
    summaries are never changed once made)."""
    if not with_fp:
        key = (type(t), t.shape, t.dtype, t.is_cpu or t.device, t.requires_grad)
        hit = _ALIKE.get(key)
        if hit is None:
            if len(_ALIKE) >= 4096:  # shapes that vary without end must not pile up
                _ALIKE.clear()
            hit = _ALIKE[key] = _tensor_summary(t, None)
        return hit
    try:
        fp = fingerprint(t)
    except Exception:
        fp = None
    return _tensor_summary(t, fp)


def _tensor_summary(t: Any, fp: str | None) -> TensorSummary:
    return TensorSummary(class_name(t), list(t.shape), dtype_name(t.dtype), device_name(t), fp,
                         {"requires_grad": t.requires_grad})


#: (class, shape, dtype, device, requires_grad) -> the summary of such a tensor, unfingerprinted
_ALIKE: dict[tuple, TensorSummary] = {}


def class_name(obj: Any) -> str:
    """:func:`type_name`, cached per class: tensors and modules are summarized several times
    per layer and step. The cache is bounded (classes made on the fly must not pile up)."""
    cls = type(obj)
    try:
        return _CLASS_NAMES[cls]
    except KeyError:
        name = type_name(obj)
        if len(_CLASS_NAMES) < 1024:
            _CLASS_NAMES[cls] = name
        return name


_CLASS_NAMES: dict[type, str] = {}


class _TorchTypes:
    """The torch classes summaries dispatch on, looked up once (this module is imported
    before torch may be)."""

    def __init__(self) -> None:
        import torch

        self.tensor = torch.Tensor
        self.module = torch.nn.Module
        self.optimizer = torch.optim.Optimizer
        self.plain = (torch.dtype, torch.device)


_types: _TorchTypes | None = None


def summarize_value(session: Session, value: Any, names: Mapping[int, str], depth: int = 2,
                    fp: bool = True) -> Summary:
    """A cheap, bounded summary of a call argument (never raises). ``fp``: whether small
    tensors get a fingerprint (not when no deployed invariant compares the API's argument
    content, see ``InstrumentationPlan.wants_arg_content``)."""
    global _types
    tt = _types or (_types := _TorchTypes())
    if isinstance(value, tt.tensor):  # the common case first
        return tensor_summary(value, fp and value.numel() <= ARG_FP_MAX_ELEMENTS)
    if value is None or isinstance(value, (bool, int, float, str)):
        return session.summarize(value)
    if isinstance(value, tt.module):
        return module_summary(value, names)
    if isinstance(value, tt.optimizer):
        return ObjSummary(type_name(value), {"name": Scalar(names.get(id(value)))})
    if depth > 0 and isinstance(value, (list, tuple)):
        return SeqSummary(type_name(value), len(value),
                          [summarize_value(session, v, names, depth - 1, fp)
                           for v in value[:MAX_ITEMS]])
    if depth > 0 and isinstance(value, dict):
        items: dict[str, Summary] = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= MAX_ITEMS:
                break
            items[str(k)] = summarize_value(session, v, names, depth - 1, fp)
        return MapSummary(type_name(value), len(value), items)
    if isinstance(value, tt.plain):
        return Scalar(str(value))
    return ObjSummary(type_name(value))


def module_summary(mod: Any, names: Mapping[int, str]) -> ObjSummary:
    """``self`` of a module call: concrete class, stable name (when tracked), training flag.
    The same summary object is handed out again while these stay the same (a module is
    called every step; summaries are never changed once made)."""
    # ``training`` is unset while a module's own __init__ (e.g. DDP's) is being called
    training = getattr(mod, "training", None)
    name = names.get(id(mod))
    cls = type(mod)
    hit = _MODULES.get(id(mod))
    if hit is not None and hit[0] is cls and hit[1] is training and hit[2] == name:
        return hit[3]
    summary = ObjSummary(class_name(mod), {"name": Scalar(name),
                                           "training": Scalar(None if training is None
                                                              else bool(training))})
    if len(_MODULES) >= 65536:  # modules made and dropped on the fly must not pile up
        _MODULES.clear()
    _MODULES[id(mod)] = (cls, training, name, summary)
    return summary


#: id(module) -> (its class, training flag, name, the summary made for them)
_MODULES: dict[int, tuple[type, Any, str | None, ObjSummary]] = {}
