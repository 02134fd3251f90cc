"""The adapter's per-process state and the one generic call probe every wrapper uses.

A wrapped API runs in one of two modes:

* **eager** (concrete arguments): a ``CallStart``/``CallReturn`` pair is emitted, arguments are
  summarized with fingerprints, tracked variables that changed across the call are emitted as
  ``VarState`` events with the call's id;
* **traced** (inside the tracing of a ``jax.jit`` function, or under ``grad``/``vmap``): no
  value is read. Inside a jitted function's trace the call is recorded into that function's
  *trace profile* (API name and static facts); each later call of the compiled function
  replays the profile as child calls marked ``in_jit``.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from traincheck_core import (
    CallError,
    CallReturn,
    CallStart,
    MapSummary,
    ObjSummary,
    Scalar,
    SeqSummary,
    Session,
    TensorSummary,
    VarState,
)

from .arrays import ArrayKit
from .pytrees import VarNamer

__all__ = ["JaxAdapter", "Frame", "LIB_PREFIXES", "api_of_update_fn"]

# Call sites inside these packages are library internals, not "training as people write it".
LIB_PREFIXES = ("jax", "jaxlib", "flax", "optax", "traincheck_jax", "traincheck_core",
                "orbax", "chex")

UPDATE_APIS = ("optax.GradientTransformation.update", "optax.apply_updates",
               "flax.training.train_state.TrainState.apply_gradients",
               "flax.nnx.Optimizer.update")
GRAD_APIS = ("jax.grad.", "jax.value_and_grad.")
FORWARD_APIS = ("flax.linen.Module.apply", "flax.nnx.Module.__call__")


_SUMMARIES = (Scalar, ObjSummary, MapSummary, SeqSummary, TensorSummary)


@dataclass
class Frame:
    """Calls recorded while one jitted function was being traced."""

    entries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def api_of_update_fn(fn: Any) -> str:
    """``optax.chain`` from ``optax.transforms._combining`` / ``chain.<locals>.update_fn``."""
    qual = getattr(fn, "__qualname__", "") or ""
    outer = qual.split(".<locals>")[0] if ".<locals>" in qual else qual
    return f"optax.{outer}" if outer else "optax.?"


class JaxAdapter:
    """Everything the probes share in one process."""

    def __init__(self, session: Session, jax: Any) -> None:
        self.session = session
        self.kit = ArrayKit(jax)
        self.jtu = jax.tree_util
        self.namer = VarNamer(self.jtu)
        self.active = True
        self.var_fp: dict[str, str | None] = {}
        self.grad_fp: dict[str, str | None] = {}
        self.step = 0
        self.explicit_stage = False  # nnx .train()/.eval() seen: they govern the stage
        self._tls = threading.local()
        # The tail of the last jitted call (its results' state events, its return, the step
        # it completes), run before anything else is emitted: see ``defer``.
        self._pending: list[Callable[[], None]] = []
        # a forked child (a data-loading worker) must not emit its parent's step
        os.register_at_fork(after_in_child=self._pending.clear)
        self._plan: Any = None
        self._want_var: dict[str, bool] = {}

    # -- deferred work ------------------------------------------------------------------------
    def defer(self, work: Callable[[], None]) -> None:
        """Run ``work`` (which emits events) just before the next event of this process, or at
        the session's end: a jitted call's results are read then, not as soon as it returns,
        so the probe does not wait for the compiled step and JAX's asynchronous dispatch keeps
        running ahead. The event order is the same as if ``work`` had run at once."""
        self._pending.append(work)

    def flush(self) -> None:
        pending = self._pending
        while pending:
            try:
                work = pending.pop(0)
            except IndexError:  # another thread took it
                return
            self._safe("jit", work)

    def _wanted(self) -> dict[str, bool]:
        """Answers of ``plan.wants_variable`` so far (a step asks for every leaf)."""
        if self.session.plan is not self._plan:
            self._plan, self._want_var = self.session.plan, {}
        return self._want_var

    def wants_variable(self, name: str) -> bool:
        wanted = self._wanted()
        got = wanted.get(name)
        if got is None:
            plan = self.session.plan
            got = wanted[name] = bool(plan.full or plan.wants_variable(name))
        return got

    # -- thread-local stacks ----------------------------------------------------------------
    def frames(self) -> list[Frame]:
        f = getattr(self._tls, "frames", None)
        if f is None:
            f = self._tls.frames = []
        return f

    def calls(self) -> list[int]:
        c = getattr(self._tls, "calls", None)
        if c is None:
            c = self._tls.calls = []
        return c

    def bypass(self, probe: str) -> bool:
        """True when this probe must stay out of the way (off, failed, or our own work)."""
        s = self.session
        return not self.active or probe in s.disabled_probes or s.is_suppressed()

    # -- summaries ----------------------------------------------------------------------------
    def summarize(self, value: Any, traced: bool) -> Any:
        # Containers go through the core registry, where this adapter registered arrays and
        # tracers (tracers summarize to shape/dtype only, so nothing is concretized).
        if isinstance(value, _SUMMARIES):
            return value
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            return self.kit.summarize(value, fingerprint=False if traced else None)
        return self.session.summarize(value)

    def summarize_args(self, named: dict[str, Any], traced: bool) -> dict[str, Any]:
        return {k: self.summarize(v, traced) for k, v in named.items()}

    # -- events ---------------------------------------------------------------------------
    def start(self, api: str, args: dict[str, Any], loc: str | None = None,
              t: int | None = None) -> int:
        if self._pending:
            self.flush()
        cid = self.session.next_call_id()
        stack = self.calls()
        self.session.emit(CallStart(t=self.session.now() if t is None else t, id=cid,
                                    parent=stack[-1] if stack else 0, api=api,
                                    thread=threading.get_ident(), args=args, loc=loc))
        stack.append(cid)
        return cid

    def end(self, cid: int, ret: Any = None, exc: BaseException | None = None) -> None:
        self.leave(cid)
        self.emit_end(cid, ret, exc)

    def leave(self, cid: int) -> None:
        """The call ``cid`` returned to its caller: later calls are not its children."""
        stack = self.calls()
        if stack and stack[-1] == cid:
            stack.pop()

    def emit_end(self, cid: int, ret: Any = None, exc: BaseException | None = None) -> None:
        now = self.session.now()
        if exc is None:
            self.session.emit(CallReturn(t=now, id=cid, ret=ret))
        else:
            self.session.emit(CallError(t=now, id=cid, exc_type=type(exc).__name__,
                                        message=str(exc)[:200]))

    def observe_vars(self, pairs: list[tuple[str, Any]], call: int) -> None:
        """Emit ``VarState`` for leaves first seen (``call=0``) or changed (``call``)."""
        if self._pending:
            self.flush()
        kit, seen, emit, now = self.kit, self.var_fp, self.session.emit, self.session.now
        tracer, wants = kit.Tracer, self._wanted()
        for name, leaf in pairs:
            if isinstance(leaf, tracer):
                continue
            want = wants.get(name)
            if not (self.wants_variable(name) if want is None else want):
                continue
            fp, meta = kit.state_of(leaf)
            known = name in seen
            if known and seen[name] == fp:
                continue
            seen[name] = fp
            attrs = kit.attrs_of(meta, fp, self.grad_fp.get(name))
            emit(VarState(t=now(), name=name, vtype="jax.Array", attrs=attrs,
                          call=call if known else 0))

    def vars_of(self, tree: Any, root: str | None) -> list[tuple[str, Any]]:
        return self.namer.pairs(tree, root)

    def note_grads(self, tree: Any, root: str) -> None:
        """Remember fingerprints of concrete gradient leaves, named like their parameters."""
        for name, leaf in self.namer.pairs(tree, root):
            if not self.kit.is_tracer(leaf):
                self.grad_fp[name] = self.kit.fingerprint(leaf)

    # -- meta --------------------------------------------------------------------------------
    def advance_step(self) -> None:
        if self._pending:
            self.flush()
        self.step += 1
        self.session.set_meta(step=self.step)

    def ensure_rank(self) -> None:
        """Rank from ``jax.process_index()`` once a backend exists (never initialize one
        early: ``jax.distributed.initialize`` must run first)."""
        if "rank" not in self.session.meta or self.session.meta.get("rank") is None:
            jax = self.kit.jax
            self.session.set_meta(rank=jax.process_index(), world_size=jax.process_count())

    def set_stage(self, stage: str, explicit: bool = False) -> None:
        if self._pending:
            self.flush()
        if explicit:
            self.explicit_stage = True
        elif self.explicit_stage:
            return
        self.session.set_meta(stage=stage)

    # -- the generic probe -------------------------------------------------------------------
    def call(self, probe: str, api: str, fn: Callable[..., Any], args: tuple, kwargs: dict,
             named: Callable[[], dict[str, Any]],
             after: Callable[[int, Any], None] | None = None,
             before: Callable[[], None] | None = None, keep_ret: bool = False) -> Any:
        """Run ``fn(*args, **kwargs)`` observed as ``api``; fail open on any probe error."""
        if self.bypass(probe):
            return fn(*args, **kwargs)
        try:
            with self.session.suppressed():
                nm = named()
                frames = self.frames()  # non-empty: a jitted function is being traced
                traced = bool(frames) or self.kit.any_tracer(
                    self.jtu.tree_leaves(list(nm.values())))
                # An API the deployed invariants do not name keeps its call (nesting and the
                # attribution of variable changes stay intact) but not its arguments.
                wanted = self.session.plan.wants_api(api)
                if frames:
                    frames[-1].entries.append((api, self.summarize_args(nm, True) if wanted
                                               else {}))
                    cid = 0
                else:
                    if before is not None and not traced:
                        before()
                    cid = self.start(api, self.summarize_args(nm, traced) if wanted else {},
                                     caller_loc())
                    keep_ret = keep_ret and wanted
        except Exception as exc:
            self.session.probe_failed(probe, exc)
            return fn(*args, **kwargs)
        if not cid:
            return fn(*args, **kwargs)
        try:
            out = fn(*args, **kwargs)
        except BaseException as exc:
            self._safe(probe, functools.partial(self.end, cid, exc=exc))
            raise
        def finish() -> None:
            if after is not None and not traced:
                after(cid, out)
            if keep_ret and not traced:
                # Summarizing the result reads it, which waits for JAX to compute it (tens of
                # microseconds for a PRNG split): like a jitted call's tail, the return is
                # emitted just before the next event, when the result is needed anyway.
                self.leave(cid)
                self.defer(functools.partial(self._emit_ret, cid, out))
            else:
                self.end(cid, ret=self.summarize(out, traced) if keep_ret else None)

        self._safe(probe, finish)
        return out

    def _emit_ret(self, cid: int, out: Any) -> None:
        self.emit_end(cid, ret=self.summarize(out, False))

    def _safe(self, probe: str, work: Callable[[], Any]) -> None:
        try:
            with self.session.suppressed():
                work()
        except Exception as exc:
            self.session.probe_failed(probe, exc)


def caller_loc() -> str | None:
    """``file:line`` of the first frame outside JAX, Flax, Optax and traincheck."""
    f: FrameType | None = sys._getframe(2)
    while f is not None:
        mod = f.f_globals.get("__name__", "")
        if mod.split(".", 1)[0] not in LIB_PREFIXES and mod != "wrapt" and \
                not mod.startswith("wrapt."):
            return f"{f.f_code.co_filename}:{f.f_lineno}"
        f = f.f_back
    return None


def called_from_library(depth: int = 2) -> bool:
    """True when the direct caller (skipping wrapt frames) is JAX/Flax/Optax internals."""
    f: FrameType | None = sys._getframe(depth)
    while f is not None and f.f_globals.get("__name__", "").startswith(("wrapt", "traincheck_jax")):
        f = f.f_back
    if f is None:
        return False
    return f.f_globals.get("__name__", "").split(".", 1)[0] in LIB_PREFIXES
