"""Probes on Optax: ``GradientTransformation.init``/``update`` and ``optax.apply_updates``.

Optax transformations are named tuples of plain functions, so there is no class method to
patch: the tuple constructor is patched to wrap the ``init``/``update`` functions each
transformation is built with. Chains and clipping therefore show up as nested ``update``
calls, each naming its transformation in ``args["self"].type`` (``optax.chain``,
``optax.scale_by_adam``, ``optax.clip_by_global_norm``). Transformations built before
instrumentation are not observed; wrappers on ones built while instrumented pass straight
through once uninstrumented.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from traincheck_core import ObjSummary

from .adapter import JaxAdapter, api_of_update_fn
from .patching import Patches

__all__ = ["install_optax", "OptaxProbes"]

UPDATE = "optax.GradientTransformation.update"
INIT = "optax.GradientTransformation.init"
APPLY = "optax.apply_updates"
# Optax-internal signature adapters around a user-visible transformation: not worth a call.
ADAPTERS = ("optax.with_extra_args_support",)


class OptaxProbes:
    def __init__(self, ad: JaxAdapter) -> None:
        self.ad = ad
        self._tls = threading.local()
        self.pending_step = False  # an update ran and its apply_updates has not (yet)

    def _depth(self, delta: int) -> int:
        d = getattr(self._tls, "d", 0) + delta
        self._tls.d = d
        return d

    def wrap_update(self, fn: Any) -> Any:
        ad, me = self.ad, ObjSummary(api_of_update_fn(fn))
        if getattr(fn, "_traincheck_probe", False) or me.type in ADAPTERS:
            return fn

        @functools.wraps(fn)
        def update(updates: Any, state: Any, params: Any = None, *a: Any, **kw: Any) -> Any:
            # Only a top-level update (not one inside a chain, nnx.Optimizer.update or
            # TrainState.apply_gradients, which track their own variables) counts as a step.
            outer = self._depth(1) == 1 and not ad.calls()
            try:
                return ad.call(
                    "optax", UPDATE, fn, (updates, state, params, *a), kw,
                    lambda: {"self": me, "updates": updates, "state": state, "params": params},
                    after=self._after_update if outer else None,
                    before=self._before_update if outer else None)
            finally:
                self._depth(-1)

        update._traincheck_probe = True  # type: ignore[attr-defined]
        return update

    def wrap_init(self, fn: Any) -> Any:
        ad, me = self.ad, ObjSummary(api_of_update_fn(fn))
        if getattr(fn, "_traincheck_probe", False) or me.type in ADAPTERS:
            return fn

        @functools.wraps(fn)
        def init(params: Any) -> Any:
            outer = self._depth(1) == 1 and not ad.calls()
            try:
                return ad.call("optax", INIT, fn, (params,), {},
                               lambda: {"self": me, "params": params},
                               after=self._after_init if outer else None)
            finally:
                self._depth(-1)

        init._traincheck_probe = True  # type: ignore[attr-defined]
        return init

    def _before_update(self) -> None:
        if self.pending_step:  # the previous update was never applied with apply_updates
            self.pending_step = False
            self.ad.advance_step()
        self.ad.set_stage("train")

    def _after_update(self, cid: int, out: Any) -> None:
        ad = self.ad
        ad.observe_vars(ad.vars_of(out[1], "opt_state"), cid)
        ad.ensure_rank()
        self.pending_step = True

    def _after_init(self, cid: int, out: Any) -> None:
        self.ad.observe_vars(self.ad.vars_of(out, "opt_state"), 0)

    def wrap_apply(self, fn: Any) -> Any:
        ad = self.ad

        @functools.wraps(fn)
        def apply_updates(params: Any, updates: Any, *a: Any, **kw: Any) -> Any:
            def before() -> None:
                ad.observe_vars(ad.vars_of(params, "params"), 0)

            def after(cid: int, out: Any) -> None:
                ad.observe_vars(ad.vars_of(out, "params"), cid)
                if self.pending_step:
                    self.pending_step = False
                    ad.advance_step()

            top = not ad.calls()
            return ad.call("optax", APPLY, fn, (params, updates, *a), kw,
                           lambda: {"params": params, "updates": updates},
                           after if top else None, before if top else None)

        return apply_updates


def install_optax(ad: JaxAdapter, optax: Any, patches: Patches) -> OptaxProbes:
    from optax._src import base

    probes = OptaxProbes(ad)
    cls = base.GradientTransformation
    original_new = cls.__dict__["__new__"]

    def __new__(klass: Any, init: Any, update: Any, *rest: Any, **kw: Any) -> Any:
        if not ad.bypass("optax"):
            try:
                init, update = probes.wrap_init(init), probes.wrap_update(update)
            except Exception as exc:
                ad.session.probe_failed("optax", exc)
        return original_new(klass, init, update, *rest, **kw)

    patches.set(cls, "__new__", __new__)
    patches.set(optax, "apply_updates", probes.wrap_apply(optax.apply_updates))
    return probes
