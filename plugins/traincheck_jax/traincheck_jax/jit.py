"""Calls of ``jax.jit``- and ``jax.pmap``-compiled functions, observed at their call boundary.

``jax.jit(f)`` returns the real compiled function inside a transparent ``wrapt`` proxy
(``.lower``, ``.trace``, ``.clear_cache`` keep working); nothing is added to ``f`` or to the
compiled program. Each call of it is a ``jax.jit.<qualname of f>`` call whose arguments are
summarized under their parameter names, whose tracked variables (``params``/``opt_state``
leaves) are emitted when first seen and when the call changed them, and whose *trace profile*
(the Optax/Flax/PRNG calls recorded while JAX traced ``f``) is replayed as child calls marked
``in_jit``. The profile also yields the stage (a function that computes gradients or updates
parameters is ``train``; one that only runs the model is ``eval``) and the step (a call that
updates parameters completes one optimizer step).

Cost per call (the training thread's, kept small because a jitted step takes a millisecond
or two): before dispatch, only what a donating function deletes is read (its tracked input
leaves and argument summaries). After dispatch, while the step runs: the previous call's
tail (below), the tracked input leaves against their cached fingerprints (a step's inputs
are the previous step's outputs, already read), the call with the part of its replayed
profile the deployed invariants name, the argument summaries and the output leaves' names
(cached per pytree structure). Fingerprinting the output leaves (XXH3 over a zero-copy host
view) needs the step's results, so it is deferred with the rest of the call's tail (its
results' state events, its return, the step it completes), which runs just before the next
event of the process — at the next jitted call once that is dispatched, at the next observed
API call, or at the session's end. The probe never waits for the step it just dispatched,
JAX's asynchronous dispatch keeps running ahead, and the events keep their order. The
argument signature that picks the call's trace profile is only built when the function has
more than one compiled program.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any

import msgspec
import wrapt

from traincheck_core import Scalar

from .adapter import (
    FORWARD_APIS,
    GRAD_APIS,
    UPDATE_APIS,
    Frame,
    JaxAdapter,
    called_from_library,
    caller_loc,
)
from .pytrees import var_root

__all__ = ["JitProbe"]

IN_JIT = Scalar(True)
_ENCODER = msgspec.msgpack.Encoder()


@dataclass
class Profile:
    """The calls recorded while JAX traced a jitted function, as each later call of the
    compiled function replays them (their arguments, marked ``in_jit``, are fixed at tracing
    time), and what they imply: the stage, and whether the call completes an optimizer step."""

    calls: list[tuple[str, dict[str, Any]]]
    stage: str | None = None
    updates: bool = False
    _for_plan: tuple[Any, bool, list[tuple[str, Any]]] | None = None

    def replayed(self, plan: Any, raw: bool = False) -> list[tuple[str, Any]]:
        """The recorded calls the plan wants (all of them when it is full): an API no
        deployed invariant names is not replayed at all (its events would be dropped).
        ``raw``: nothing in this process reads the events, so each call's arguments (fixed
        when JAX traced the function, up to kilobytes of pytree summaries) come encoded
        once, as ``msgspec.Raw``, instead of being encoded again at every step."""
        cached = self._for_plan
        if cached is None or cached[0] is not plan or cached[1] is not raw:
            calls: list[tuple[str, Any]] = [c for c in self.calls if plan.wants_api(c[0])]
            if raw:
                calls = [(api, msgspec.Raw(_ENCODER.encode(args))) for api, args in calls]
            cached = self._for_plan = (plan, raw, calls)
        return cached[2]

    @classmethod
    def of(cls, entries: list[tuple[str, dict[str, Any]]]) -> Profile:
        apis = [api for api, _ in entries]
        updates = any(api in UPDATE_APIS for api in apis)
        stage = None
        if updates or any(a.startswith(GRAD_APIS) for a in apis):
            stage = "train"
        elif any(a.startswith(FORWARD_APIS) for a in apis):
            stage = "eval"
        return cls([(api, {**args, "in_jit": IN_JIT}) for api, args in entries], stage,
                   updates)


NO_PROFILE = Profile([])
_PLAIN = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass
class JitInfo:
    api: str
    sig: inspect.Signature | None
    profiles: dict[Any, Profile] = field(default_factory=dict)
    last: Profile | None = None
    donates: bool = False  # donate_argnums/argnames: arguments are gone after the call
    programs: int = -2  # compiled programs right after the only profile was recorded
    positional: tuple[str, ...] | None = None  # names when every parameter is a plain one

    def __post_init__(self) -> None:
        if self.sig is not None and all(p.kind in _PLAIN for p in self.sig.parameters.values()):
            self.positional = tuple(self.sig.parameters)

    def bind(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        """Arguments by parameter name (``Signature.bind`` costs 5 us: skipped for the usual
        call that passes every parameter positionally)."""
        if not kwargs and self.positional is not None and len(args) == len(self.positional):
            return dict(zip(self.positional, args, strict=True))
        return _bind(self.sig, args, kwargs)


@dataclass
class Pre:
    named: dict[str, Any]
    args: dict[str, Any] | None  # summarized after the call unless it donates them
    flat: dict[str, tuple[list[Any], Any]]
    roots: dict[Any, str]
    cache_size: int
    inputs: list[tuple[str, Any]] | None  # tracked input leaves, read after dispatch
    cid: int = 0


class JitProbe:
    """Replaces ``jax.jit`` (or ``jax.pmap``: ``kind``) with a function returning observed
    compiled functions. A ``pmap``-compiled call is observed exactly like a jitted one: its
    replicated arguments and results are pytrees like any other (with a leading device axis)."""

    def __init__(self, ad: JaxAdapter, original: Any, kind: str = "jit") -> None:
        self.ad = ad
        self.original = original
        self.kind = kind

    def make_jit(self) -> Any:
        original = self.original

        @functools.wraps(original)
        def jit(fun: Any = None, *a: Any, **kw: Any) -> Any:
            if fun is None:  # decorator-factory use: @jax.jit(static_argnames=...)
                return lambda f: jit(f, *a, **kw)
            jitted = original(fun, *a, **kw)
            if self.ad.bypass("jit") or called_from_library():
                return jitted
            try:
                info = JitInfo(api=f"jax.{self.kind}.{_qualname(fun)}", sig=_signature(fun),
                               donates=_donates(kw))
                return wrapt.FunctionWrapper(jitted, functools.partial(self._call, info))
            except Exception as exc:
                self.ad.session.probe_failed("jit", exc)
                return jitted

        return jit

    # -- a call of the compiled function ---------------------------------------------------
    def _call(self, info: JitInfo, wrapped: Any, instance: Any, args: tuple, kwargs: dict
              ) -> Any:
        ad = self.ad
        if ad.bypass("jit"):
            return wrapped(*args, **kwargs)
        frames = ad.frames()
        if frames:  # called while another jitted function is being traced
            frames[-1].entries.append((info.api, {"in_jit": IN_JIT}))
            return wrapped(*args, **kwargs)
        try:
            with ad.session.suppressed():
                pre = self._before(info, wrapped, args, kwargs)
        except Exception as exc:
            ad.session.probe_failed("jit", exc)
            return wrapped(*args, **kwargs)
        if pre is None:
            return wrapped(*args, **kwargs)
        frame = Frame()
        frames.append(frame)
        try:
            out = wrapped(*args, **kwargs)
        except BaseException as exc:
            frames.pop()
            ad._safe("jit", functools.partial(self._failed, info, pre, exc))
            raise
        frames.pop()
        ad._safe("jit", lambda: self._after(info, pre, wrapped, frame, out))
        return out

    def _before(self, info: JitInfo, wrapped: Any, args: tuple, kwargs: dict) -> Pre | None:
        ad = self.ad
        named = info.bind(args, kwargs)
        flat = {name: ad.jtu.tree_flatten(value) for name, value in named.items()}
        if any(ad.kit.any_tracer(leaves) for leaves, _ in flat.values()):
            return None  # under grad/vmap of eager code: nothing concrete to observe here
        roots: dict[Any, str] = {}
        inputs: list[tuple[str, Any]] = []
        for name, (leaves, treedef) in flat.items():
            root = var_root(name)
            if root is not None:
                roots.setdefault(treedef, root)
            inputs += ad.namer.pairs_flat(named[name], leaves, treedef, root)
        if info.donates:  # read before the call: it deletes its arguments
            ad.observe_vars(inputs, 0)
            return Pre(named=named, args=self._args(info, named), flat=flat, roots=roots,
                       cache_size=_cache_size(wrapped), inputs=None)
        # Without donation the arguments outlive the call: read them (and emit the call's
        # start) after dispatching it, while the compiled step runs.
        return Pre(named=named, args=None, flat=flat, roots=roots,
                   cache_size=_cache_size(wrapped), inputs=inputs)

    def _args(self, info: JitInfo, named: dict[str, Any]) -> dict[str, Any]:
        ad = self.ad
        return ad.summarize_args(named, False) if ad.session.plan.wants_api(info.api) else {}

    def _start(self, info: JitInfo, pre: Pre, profile: Profile) -> None:
        self._stage(profile)
        args = self._args(info, pre.named) if pre.args is None else pre.args
        pre.cid = self.ad.start(info.api, args, caller_loc())

    def _after(self, info: JitInfo, pre: Pre, wrapped: Any, frame: Frame, out: Any) -> None:
        ad = self.ad
        if frame.entries or (info.last is None and _cache_size(wrapped) != pre.cache_size):
            # JAX traced f just now
            info.profiles[_signature_key(pre.flat)] = info.last = Profile.of(frame.entries)
            info.programs = _cache_size(wrapped) if len(info.profiles) == 1 else -2
        profile = _profile(info, pre)
        # The previous jitted call's tail first (its results are ready, or nearly: this call
        # runs after it), then this call's inputs: known leaves, cached fingerprints.
        ad.flush()
        if pre.inputs:
            ad.observe_vars(pre.inputs, 0)
        self._start(info, pre, profile)
        for api, args in profile.replayed(ad.session.plan, ad.session.frames_only):
            ad.end(ad.start(api, args))
        pairs = self._out_vars(pre, out)
        ad.leave(pre.cid)  # returned to the caller; its tail is emitted later
        ret = out if ad.session.plan.wants_api(info.api) else None
        ad.defer(functools.partial(self._tail, pre.cid, ret, pairs, profile.updates))

    def _tail(self, cid: int, ret: Any, pairs: list[tuple[str, Any]], updates: bool) -> None:
        """What needs the call's results (it waits for the compiled step): the state of the
        tracked output leaves, the result summary, and the step the call completes."""
        ad = self.ad
        ad.observe_vars(pairs, cid)
        ad.emit_end(cid, ret=None if ret is None else ad.summarize(ret, False))
        ad.ensure_rank()
        if updates:
            ad.advance_step()

    def _failed(self, info: JitInfo, pre: Pre, exc: BaseException) -> None:
        self._start(info, pre, _profile(info, pre))
        self.ad.end(pre.cid, exc=exc)

    def _stage(self, profile: Profile) -> None:
        if profile.stage is not None:
            self.ad.set_stage(profile.stage)

    def _out_vars(self, pre: Pre, out: Any) -> list[tuple[str, Any]]:
        """Tracked leaves of the result: by path segment, or by having the structure of a
        variable argument (``return new_params, new_opt_state, loss``)."""
        ad = self.ad
        parts = list(out) if isinstance(out, (tuple, list)) else [out]
        pairs: list[tuple[str, Any]] = []
        for part in parts:
            leaves, treedef = ad.jtu.tree_flatten(part)
            root = pre.roots.get(treedef) if pre.roots else None
            pairs += ad.namer.pairs_flat(part, leaves, treedef, root)
        return pairs


def _profile(info: JitInfo, pre: Pre) -> Profile:
    """The profile of the program this call ran. With one profile recorded and no program
    compiled since, it is that one (no need to build the call's signature key)."""
    if info.last is None:
        return NO_PROFILE
    if len(info.profiles) == 1 and pre.cache_size == info.programs >= 0:
        return info.last
    return info.profiles.get(_signature_key(pre.flat), info.last)


def _signature_key(flat: dict[str, tuple[list[Any], Any]]) -> Any:
    """What selects the compiled program: argument structures, leaf shapes and dtypes (dtype
    objects, not their names: ``str(dtype)`` costs microseconds per leaf)."""
    key = tuple((name, treedef, tuple(_leaf_key(x) for x in leaves))
                for name, (leaves, treedef) in flat.items())
    try:
        hash(key)
    except (TypeError, ValueError):  # unhashable static pytree data: compare as text
        return repr(key)
    return key


def _leaf_key(x: Any) -> Any:
    dtype = getattr(x, "dtype", None)
    return (getattr(x, "shape", None), type(x) if dtype is None else dtype)


def _donates(kw: dict[str, Any]) -> bool:
    """Whether ``jax.jit`` was asked to donate arguments (``donate_argnums=0`` is falsy)."""
    for name in ("donate_argnums", "donate_argnames"):
        value = kw.get(name)
        if value is not None and (isinstance(value, (int, str)) or len(tuple(value)) > 0):
            return True
    return False


def _qualname(fun: Any) -> str:
    f = fun.func if isinstance(fun, functools.partial) else fun
    return getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or type(f).__name__


def _signature(fun: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(fun)
    except (TypeError, ValueError):
        return None


def _bind(sig: inspect.Signature | None, args: tuple, kwargs: dict) -> dict[str, Any]:
    if sig is not None:
        try:
            bound = sig.bind(*args, **kwargs)
            out: dict[str, Any] = {}
            for k, v in bound.arguments.items():
                kind = sig.parameters[k].kind
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    out.update({f"{k}{i}": x for i, x in enumerate(v)})
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    out.update(v)
                else:
                    out[k] = v
            return out
        except TypeError:
            pass
    return {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}


def _cache_size(wrapped: Any) -> int:
    try:
        return int(wrapped._cache_size())
    except Exception:
        return -1
