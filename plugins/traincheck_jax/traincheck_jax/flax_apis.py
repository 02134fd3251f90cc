"""Probes on Flax: Linen ``Module.apply`` and ``Dropout``, ``TrainState.apply_gradients``,
NNX ``Optimizer.update``, ``Module.train``/``eval`` and ``Dropout``.

The ``train``/``deterministic`` flags are recorded as call arguments rather than taken as the
stage: "evaluation run with dropout still active" is exactly a wrong flag, so the stage comes
from what the step does (computes gradients / updates parameters: ``train``; only runs the
model: ``eval``), from NNX ``.train()``/``.eval()``, or from ``traincheck.annotate``.
"""

from __future__ import annotations

import functools
from typing import Any

from traincheck_core import ObjSummary, type_name

from .adapter import JaxAdapter
from .patching import Patches

__all__ = ["install_linen", "install_train_state", "install_nnx"]

FLAGS = ("train", "deterministic", "training", "is_training")


def _wrap_method(ad: JaxAdapter, probe: str, api: str, orig: Any, named: Any,
                 after: Any = None, before: Any = None) -> Any:
    @functools.wraps(orig)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return ad.call(probe, api, orig, (self, *args), kwargs,
                       lambda: named(self, args, kwargs),
                       (lambda cid, out: after(self, args, kwargs, cid, out)) if after else None,
                       (lambda: before(self, args, kwargs)) if before else None)

    return method


def _dropout_named(self: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    det = kwargs.get("deterministic", args[1] if len(args) > 1 else None)
    if det is None:
        det = getattr(self, "deterministic", None)
    rate = getattr(self, "rate", None)
    active = bool(det is False and rate not in (None, 0, 0.0))
    return {"self": ObjSummary(type_name(self)), "rate": rate,
            "deterministic": None if det is None else bool(det), "active": active}


def install_linen(ad: JaxAdapter, linen: Any, patches: Patches) -> None:
    def apply_named(self: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
        out: dict[str, Any] = {"self": ObjSummary(type_name(self))}
        out.update({k: kwargs[k] for k in FLAGS if k in kwargs})
        if "rngs" in kwargs:
            out["rngs"] = kwargs["rngs"]
        if "method" in kwargs and kwargs["method"] is not None:
            out["method"] = getattr(kwargs["method"], "__name__", str(kwargs["method"]))
        return out

    def apply_before(self: Any, args: tuple, kwargs: dict) -> None:
        if kwargs.get("mutable") in (None, False):  # a forward pass outside any gradient
            ad.set_stage("eval")

    patches.set(linen.Module, "apply", _wrap_method(
        ad, "flax", "flax.linen.Module.apply", linen.Module.apply, apply_named,
        before=apply_before))
    patches.set(linen.Dropout, "__call__", _wrap_method(
        ad, "flax", "flax.linen.Dropout.__call__", linen.Dropout.__call__, _dropout_named))


def install_train_state(ad: JaxAdapter, train_state: Any, patches: Patches) -> None:
    cls = train_state.TrainState

    def named(self: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
        return {"self": ObjSummary(type_name(self)), "grads": kwargs.get("grads")}

    def before(self: Any, args: tuple, kwargs: dict) -> None:
        ad.set_stage("train")
        ad.note_grads(kwargs.get("grads"), "params")
        ad.observe_vars(ad.vars_of(self.params, "params"), 0)

    def after(self: Any, args: tuple, kwargs: dict, cid: int, out: Any) -> None:
        ad.observe_vars(ad.vars_of(out.params, "params"), cid)
        ad.observe_vars(ad.vars_of(out.opt_state, "opt_state"), cid)
        ad.ensure_rank()
        ad.advance_step()

    patches.set(cls, "apply_gradients", _wrap_method(
        ad, "flax", "flax.training.train_state.TrainState.apply_gradients",
        cls.apply_gradients, named, after, before))


def install_nnx(ad: JaxAdapter, nnx: Any, patches: Patches) -> None:
    def model_of(self: Any, args: tuple) -> Any:
        if args and isinstance(args[0], nnx.Module):
            return args[0]
        return getattr(self, "model", None)

    def params_of(model: Any) -> list[tuple[str, Any]]:
        if model is None:
            return []
        return ad.vars_of(nnx.state(model, nnx.Param), "params")

    def grads_of(self: Any, args: tuple, kwargs: dict) -> Any:
        return kwargs.get("grads", args[1] if model_of(self, args) is not None and
                          len(args) > 1 and args and isinstance(args[0], nnx.Module)
                          else (args[0] if args else None))

    def named(self: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
        return {"self": ObjSummary(type_name(self)), "grads": grads_of(self, args, kwargs)}

    def before(self: Any, args: tuple, kwargs: dict) -> None:
        ad.note_grads(grads_of(self, args, kwargs), "params")
        ad.observe_vars(params_of(model_of(self, args)), 0)

    def after(self: Any, args: tuple, kwargs: dict, cid: int, out: Any) -> None:
        ad.observe_vars(params_of(model_of(self, args)), cid)
        ad.ensure_rank()
        ad.advance_step()

    opt = nnx.Optimizer
    patches.set(opt, "update", _wrap_method(ad, "flax", "flax.nnx.Optimizer.update",
                                            opt.update, named, after, before))
    for mode in ("train", "eval"):
        orig = getattr(nnx.Module, mode, None)
        if orig is not None:
            patches.set(nnx.Module, mode, _wrap_method(
                ad, "flax", f"flax.nnx.Module.{mode}", orig,
                lambda self, a, k: {"self": ObjSummary(type_name(self))},
                after=lambda self, a, k, cid, out, m=mode: ad.set_stage(m, explicit=True)))
    patches.set(nnx.Dropout, "__call__", _wrap_method(
        ad, "flax", "flax.nnx.Dropout.__call__", nnx.Dropout.__call__, _dropout_named))
