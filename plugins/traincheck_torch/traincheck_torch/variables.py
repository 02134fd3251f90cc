"""Variable tracking: parameters, gradients, buffers and optimizer state of every model in play.

A model becomes tracked when its parameters are handed to an optimizer, when it is wrapped by
DDP, or when it is called at the top level. Every tracked variable gets a stable name
(``model.fc1.weight``; optimizer state ``optimizer.state.model.fc1.weight.exp_avg``; optimizer
hyper-parameters ``optimizer.param_groups.0``) and a :class:`VarState` when first seen
(``call=0``) and whenever its attributes change across an instrumented call.

To stay cheap, each observation recomputes only the fingerprints the call can have changed
(``what``): ``data`` after ``Optimizer.step``, ``grad`` after ``backward``/``zero_grad``/
``clip_grad_*``, ``all`` after rare calls (``.to()``, ``load_state_dict``, ``nn.init``).
Fingerprints not recomputed are carried over from the variable's last state. Under online
checking the plan may need less (:class:`Content`): no fingerprint where no invariant compares
content, or one per step, when the step ends.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from traincheck_core import InstrumentationPlan, Session, VarState
from traincheck_core.session import CONTENT_ALWAYS, CONTENT_NONE

from .fingerprint import SET, fingerprint, is_readable
from .naming import candidates, find_name, unwrap
from .summarize import class_name, device_name, dtype_name

__all__ = ["VariableTracker", "Writes", "DATA", "GRAD", "ALL"]

DATA, GRAD, ALL = 1, 2, 3
AttrValue = Any  # a VarState attribute value (scalar, str, list of ints or None)
_TP_ATTRS = ("tensor_model_parallel", "partition_dim", "partition_stride", "sequence_parallel")


@dataclass
class _Model:
    name: str
    ref: weakref.ref
    trained: bool = False


@dataclass
class _Opt:
    ref: weakref.ref
    index: int
    name: str | None = None
    steps: int = 0
    params: list[Any] = field(default_factory=list)


class _Var:
    """What :meth:`VariableTracker.observe` knows of one tensor variable: its last state
    (``attrs``, empty before the first), its static attributes, what they were built from
    (``sig``), the content modes that follow from them, the record of writes whose tokens
    stand in for its data fingerprint where allowed (``dw``; ``None``: hash), and whether the
    last state carries them (``current``)."""

    __slots__ = ("attrs", "sig", "static", "dm", "gm", "dw", "vtype", "current")

    def __init__(self) -> None:
        self.attrs: dict[str, AttrValue] = {}
        self.sig: tuple = ()
        self.static: dict[str, AttrValue] = {}
        self.dm = self.gm = CONTENT_ALWAYS
        self.dw: Writes | None = None
        self.vtype = ""
        self.current = False


class Writes:
    """Change tokens for the data of one variable whose deployed invariants only ask whether
    it changed (``InstrumentationPlan.content_by_writes``): a fresh token after every write,
    the last one while nothing wrote. Hashing megabytes of optimizer state at every step costs
    more than any other probe, and torch already counts in-place writes to a tensor
    (``Tensor._version``); a new tensor object is a write too.

    Not every write is counted: batch norm's running statistics, ``.data`` and numpy views
    and native kernels writing through raw pointers bypass the counter. So a variable is
    hashed at first, and its values are fingerprints, until ``PROOF`` observations have seen
    its content change exactly when a write was counted; a single disagreement (content
    changed and no write counted, or a counted write left it as it was) keeps it hashed for
    good. Tokens start at a change, so the switch is never taken for one. Views are always
    hashed: a view shares its base's counter (state kept in one flat buffer would count every
    write to the buffer as one to each of its parts).

    What this cannot see: a variable whose writes stop being counted later on (an uncounted
    write then looks like no change), and a counted write of the values already there after
    the proof (it looks like a change). So it is used only where writes change values:
    optimizer state and buffers, never parameters (``lr=0`` writes them unchanged) nor
    gradients (a loss multiplied by zero gives a new, all-zero gradient object each step)."""

    PROOF = 2
    __slots__ = ("ref", "version", "hash", "last", "proven")

    def __init__(self) -> None:
        self.ref: Any = None  # weak reference to the tensor of the last value
        self.version = -1
        self.hash: str | None = None  # content hash at the last value, while proving
        self.last: AttrValue = None  # the value given at the last look
        self.proven = 0  # changes seen counted so far; -1: counting disagreed, always hash

    def value(self, x: Any) -> AttrValue:
        """The attribute's value for tensor ``x``: equal to the value given at the last look
        exactly when its content is the same (the states in between do not matter)."""
        if self.proven < 0:  # counting disagreed once: always hashed
            return fingerprint(x)
        try:
            version = x._version
        except RuntimeError:  # inference tensors count no writes
            return fingerprint(x)
        if x._base is not None:
            return fingerprint(x)
        ref = self.ref
        same = ref is not None and ref() is x
        written = not same or version != self.version
        if self.proven >= self.PROOF:
            if written:
                if not same:
                    self.ref = weakref.ref(x)
                self.version, self.last = version, f"w{next(_TOKENS)}"
            return self.last
        h = fingerprint(x)
        changed = h != self.hash
        if self.hash is not None:
            if changed != written:
                self.proven = -1
            elif changed:
                self.proven += 1
        self.ref, self.version, self.hash = weakref.ref(x), version, h
        # tokens start at a change: the value moves from a fingerprint to a token only then
        self.last = f"w{next(_TOKENS)}" if changed and self.proven >= self.PROOF else h
        return self.last


#: change tokens (``Writes``): one counter per process, so no two are ever equal
_TOKENS = itertools.count(1)


class VariableTracker:
    """Knows the tracked models and optimizers, names their variables, emits VarStates."""

    def __init__(self, session: Session, plan: InstrumentationPlan | None = None) -> None:
        self.session = session
        self.models: dict[int, _Model] = {}
        self.opts: dict[int, _Opt] = {}
        self.module_names: dict[int, str] = {}  # id(submodule) -> "model.layer1"
        self.param_names: dict[int, str] = {}  # id(param or buffer) -> "model.layer1.weight"
        self._vars: dict[str, _Var] = {}  # name -> what is known of that tensor variable
        self._groups: dict[str, dict[str, AttrValue]] = {}  # name -> a param group's last state
        self.dirty: dict[int, Any] = {}  # params whose .grad was written since last look
        self._hooked: dict[int, Any] = {}  # id(param) -> hook handle
        # Module trees' shape: counts registrations (the adapter installs the hooks);
        # -1 until then: unknown, so buffers are looked up every time.
        self.structure = -1
        self._buffer_slots: dict[int, tuple[weakref.ref, int, list[tuple[str, Any, str]]]] = {}
        self._taken: set[str] = set()
        # what of each variable's content the plan needs (None: all of it, always)
        self.content: Content | None = None
        plan = plan or session.plan
        if not plan.full and plan.content is not None:
            exact = bool(session.config.options.get("torch_exact_content"))
            self.content = Content(plan, exact)
        # id(gradient) -> (gradient, its version, fingerprint): read early (hash_grads_early)
        self._early: dict[int, tuple[Any, int, str | None]] = {}

    # -- discovery ---------------------------------------------------------------------------
    def known_module(self, mod: Any) -> bool:
        return id(mod) in self.module_names

    def track_model(self, mod: Any, name: str | None = None, call: int = 0) -> str:
        """Track ``mod`` (wrappers are unwrapped); returns its name. Idempotent."""
        mod = unwrap(mod)
        entry = self.models.get(id(mod))
        if entry is not None and entry.ref() is mod:
            return entry.name
        name = self._unique(name or find_name(mod, 3) or "model")
        self.models[id(mod)] = _Model(name, weakref.ref(mod))
        self._index_model(mod, name)
        self.observe(self.model_vars(mod, name), ALL, call)
        return name

    def _unique(self, name: str) -> str:
        base, n = name, 1
        while name in self._taken:
            n += 1
            name = f"{base}_{n}"
        self._taken.add(name)
        return name

    def _index_model(self, mod: Any, name: str) -> None:
        for sub_name, sub in mod.named_modules():
            self.module_names.setdefault(id(sub), f"{name}.{sub_name}" if sub_name else name)
        for pname, p in mod.named_parameters():
            self.param_names.setdefault(id(p), f"{name}.{pname}")
            self._hook_grad(p)
        for bname, b in mod.named_buffers():
            self.param_names.setdefault(id(b), f"{name}.{bname}")

    def _hook_grad(self, p: Any) -> None:
        if id(p) in self._hooked or not p.requires_grad:
            return
        dirty = self.dirty

        def on_grad(param: Any) -> None:
            dirty[id(param)] = param

        try:
            self._hooked[id(p)] = p.register_post_accumulate_grad_hook(on_grad)
        except RuntimeError:
            pass  # not a leaf: no accumulated gradient to watch

    def track_optimizer(self, opt: Any, call: int = 0) -> None:
        """Track ``opt`` and the models owning its parameters (found in nearby user code)."""
        if id(opt) in self.opts and self.opts[id(opt)].ref() is opt:
            return
        import torch

        params = [p for g in opt.param_groups for p in g["params"]]
        self.opts[id(opt)] = _Opt(weakref.ref(opt), len(self.opts), params=params)
        ids = {id(p) for p in params}
        for var, mod in candidates(torch.nn.Module, 3):
            inner = unwrap(mod)
            if any(id(p) in ids for p in inner.parameters()):
                self.track_model(inner, var, call)
                self.models[id(inner)].trained = True
        for i, p in enumerate(params):  # parameters no model of the user's code owns
            if id(p) not in self.param_names:
                self.param_names[id(p)] = f"{self._opt_prefix(opt)}.params.{i}"
                self._hook_grad(p)
                self.observe([(self.param_names[id(p)], p, True)], ALL, call)

    def opt_name(self, opt: Any) -> str:
        entry = self.opts.get(id(opt))
        if entry is None:
            self.track_optimizer(opt)
            entry = self.opts[id(opt)]
        if entry.name is None:
            entry.name = self._unique(find_name(opt, 3) or self._opt_prefix(opt))
        return entry.name

    def _opt_prefix(self, opt: Any) -> str:
        entry = self.opts.get(id(opt))
        return "optimizer" if entry is None or entry.index == 0 else f"optimizer{entry.index}"

    def any_trained(self) -> bool:
        return any(m.trained for m in self.models.values())

    def is_trained(self, mod: Any) -> bool:
        m = self.models.get(id(unwrap(mod)))
        return bool(m and m.trained)

    # -- enumeration -------------------------------------------------------------------------
    def model_vars(self, mod: Any, name: str) -> Iterator[tuple[str, Any, bool]]:
        for pname, p in mod.named_parameters():
            yield f"{name}.{pname}", p, True
        yield from self.buffer_vars(mod, name)

    def buffer_vars(self, mod: Any, name: str) -> Iterator[tuple[str, Any, bool]]:
        """``mod``'s buffers (as ``named_buffers`` names them). Where they live in the module
        tree is looked up again only when a module or buffer was registered somewhere since
        (``structure_changed``): this runs after every training forward."""
        key = id(mod)
        hit = self._buffer_slots.get(key)
        if hit is None or hit[0]() is not mod or hit[1] != self.structure or self.structure < 0:
            slots = self._buffer_slots
            # weakly: a model the user drops must not be kept alive by this index
            ref = weakref.ref(mod, _Forget(slots, key))
            hit = slots[key] = (ref, self.structure, list(_buffer_slots(mod, name)))
        for full, owner, bkey in hit[2]:
            b = owner._buffers.get(bkey)
            if b is not None:
                yield full, b, False

    def structure_changed(self, *args: Any) -> None:
        """A torch module/buffer registration hook: some module tree changed."""
        if self.structure >= 0:
            self.structure += 1

    def all_model_vars(self) -> Iterator[tuple[str, Any, bool]]:
        for m in list(self.models.values()):
            mod = m.ref()
            if mod is not None:
                yield from self.model_vars(mod, m.name)

    def param_vars(self, params: Iterable[Any]) -> Iterator[tuple[str, Any, bool]]:
        names = self.param_names
        for p in params:
            name = names.get(id(p))
            if name is not None:
                yield name, p, True

    def opt_params(self, opt: Any) -> list[Any]:
        return [p for g in opt.param_groups for p in g["params"]]

    def in_place_grad_edits_matter(self) -> bool:
        """Whether observing gradients edited in place (clipping, unscaling) can record
        anything: such edits change content only, never whether a gradient is set, and under
        a plan that compares no gradient at every change that content is not recorded then."""
        return self.content is None or self.content.grad_always

    def take_dirty(self) -> list[Any]:
        out = list(self.dirty.values())
        self.dirty.clear()
        return out

    # -- observation -------------------------------------------------------------------------
    def observe(self, items: Iterable[tuple[str, Any, bool]], what: int, call: int,
                at_end: bool = False) -> None:
        """Emit a VarState for each variable whose attributes differ from its last state.
        ``at_end``: the step ends now (content needed only at step ends is computed).

        This runs for hundreds of tensors per training step, so it is one loop: the
        attributes besides the fingerprints are rebuilt only when what they come from changes
        (a tensor's ``__dict__`` size stands for its marks), and an unchanged state costs no
        dict."""
        s = self.session
        emit, now, known, content = s.emit, s.now, self._vars, self.content
        fp = self._fingerprint if self._early else fingerprint
        pending = content.pending if content is not None else None
        asked_data, asked_grad = bool(what & DATA), bool(what & GRAD)
        for name, t, is_param in items:
            v = known.get(name)
            sig = (type(t), t.dtype, t.shape, t.requires_grad, t.is_cpu or t.device,
                   len(t.__dict__), is_param)
            if v is None or v.sig != sig:
                v = self._restate(name, t, is_param, sig, v)
            prev = v.attrs
            first = not prev
            ask_d, ask_g = asked_data, asked_grad
            if at_end and pending and name in pending:  # the step-end fingerprints, now
                owed = pending.pop(name)[2]
                ask_d, ask_g = ask_d or bool(owed & DATA), ask_g or bool(owed & GRAD)
            data, later_d = _content(t, None if first else prev["data"], ask_d, v.dm, at_end,
                                     first, v.dw, fp)
            grad, later_g = _content(t.grad if is_param else None,
                                     None if first else prev["grad"], ask_g, v.gm, at_end,
                                     first, None, fp)
            if pending is not None and (later_d or later_g or name in pending):
                _owe(pending, name, t, is_param, (DATA if later_d else 0) |
                     (GRAD if later_g else 0))
            if v.current and data == prev["data"] and grad == prev["grad"]:
                continue  # with the static attributes of the last state, nothing changed
            attrs = {"data": data, "grad": grad, **v.static}
            if not v.current:
                v.current = True
                if attrs == prev:
                    continue
            v.attrs = attrs
            emit(VarState(t=now(), name=name, vtype=v.vtype, attrs=attrs,
                          call=0 if first else call))

    def _restate(self, name: str, t: Any, is_param: bool, sig: tuple, v: _Var | None) -> _Var:
        """A variable first seen, or whose static attributes' sources changed: rebuild them
        (and its content modes, which follow them)."""
        static = static_attrs(t, is_param)
        dw = False
        if self.content is None:
            dm = gm = CONTENT_ALWAYS
        else:
            dm, gm, dw = self.content.modes_of(name, t, is_param, static)
        if v is None:
            v = self._vars[name] = _Var()
        v.sig, v.static, v.dm, v.gm, v.vtype = sig, static, dm, gm, class_name(t)
        # a record of writes stays across static changes (its tokens are in the last state)
        v.dw = (v.dw or Writes()) if dw else None
        v.current = False
        return v

    def observe_step_end(self, call: int) -> None:
        """The step ends: compute the content that only step ends need (see ``Content``)."""
        if self.content is None:
            return
        pending = self.content.take_pending()
        for name, (t, is_param, what) in pending.items():
            self.observe([(name, t, is_param)], what, call, at_end=True)

    def observe_optimizer(self, opt: Any, call: int, at_end: bool = False) -> None:
        """Parameters' data, optimizer state and hyper-parameters after a step; ``at_end``:
        this step ends the training step (the fingerprints owed then are computed too)."""
        try:
            self.observe(self.param_vars(self.opt_params(opt)), DATA, call, at_end)
            self.observe(self.state_vars(opt), ALL, call, at_end)
            self.observe_hparams(opt, call)
            if at_end:
                self.observe_step_end(call)
        finally:
            self._early.clear()

    def hash_grads_early(self) -> None:
        """The optimizer step that ends the training step begins: fingerprint now the
        gradients whose fingerprints the step's end owes.

        They are final for the optimizer now, and still in the CPU's caches from the
        backward pass or clipping, while after the step its state has pushed them out (a
        fully traced run reads them at the same point: its last look at gradients before the
        step end is after backward or clipping). A gradient the step replaces or writes in a
        way torch counts is read again when the step ends."""
        early = self._early
        early.clear()
        if self.content is None or not self.content.pending:
            return
        for t, is_param, what in self.content.pending.values():
            g = t.grad if is_param and what & GRAD else None
            if g is None:
                continue
            try:
                version = g._version
            except RuntimeError:  # an inference tensor counts no writes: read it at the end
                continue
            early[id(g)] = (g, version, fingerprint(g))

    def _fingerprint(self, x: Any) -> str | None:
        """``fingerprint(x)``, or the one read early, if ``x`` has not been written since."""
        hit = self._early.pop(id(x), None)
        if hit is not None and hit[0] is x and hit[1] == x._version:
            return hit[2]
        return fingerprint(x)

    def state_vars(self, opt: Any) -> Iterator[tuple[str, Any, bool]]:
        import torch

        prefix = self.opt_name(opt)
        names = self.param_names
        for p, st in opt.state.items():
            pname = names.get(id(p))
            if pname is None:
                continue
            for key, v in st.items():
                if isinstance(v, torch.Tensor):
                    yield f"{prefix}.state.{pname}.{key}", v, False

    def observe_hparams(self, opt: Any, call: int) -> None:
        s = self.session
        prefix = self.opt_name(opt)
        for i, g in enumerate(opt.param_groups):
            attrs: dict[str, AttrValue] = {k: v for k, v in g.items()
                                           if k != "params" and _is_scalar(v)}
            attrs["n_params"] = len(g["params"])
            name = f"{prefix}.param_groups.{i}"
            prev = self._groups.get(name)
            if attrs != prev:
                self._groups[name] = attrs
                s.emit(VarState(t=s.now(), name=name, vtype="param_group", attrs=attrs,
                                call=call if prev is not None else 0))

    def uninstall(self) -> None:
        for h in self._hooked.values():
            try:
                h.remove()
            except Exception:
                pass
        self._hooked.clear()


class _Forget:
    """A weakref callback that drops ``key`` from ``index``."""

    def __init__(self, index: dict[int, Any], key: int) -> None:
        self.index, self.key = index, key

    def __call__(self, _: Any) -> None:
        self.index.pop(self.key, None)


def _buffer_slots(mod: Any, name: str) -> Iterator[tuple[str, Any, str]]:
    """(variable name, owning module, key in its ``_buffers``) of each of ``mod``'s buffers,
    named, ordered and deduplicated as ``mod.named_buffers()`` does."""
    seen: set[int] = set()
    for prefix, owner in mod.named_modules():
        for key, b in owner._buffers.items():
            if b is None or id(b) in seen:
                continue
            seen.add(id(b))
            yield f"{name}.{prefix}.{key}" if prefix else f"{name}.{key}", owner, key


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def tensor_attrs(t: Any, prev: dict[str, AttrValue] | None, what: int, is_param: bool
                 ) -> dict[str, AttrValue]:
    """The attributes of a tracked tensor under a full plan (every fingerprint computed);
    fingerprints not in ``what`` come from ``prev``."""
    old = prev or {}
    data, _ = _content(t, old.get("data"), bool(what & DATA), CONTENT_ALWAYS, False, not prev)
    grad, _ = _content(t.grad if is_param else None, old.get("grad"), bool(what & GRAD),
                       CONTENT_ALWAYS, False, not prev)
    return {"data": data, "grad": grad, **static_attrs(t, is_param)}


def static_attrs(t: Any, is_param: bool) -> dict[str, AttrValue]:
    """A tracked tensor's attributes other than its fingerprints."""
    attrs: dict[str, AttrValue] = {
        "requires_grad": t.requires_grad, "dtype": dtype_name(t.dtype), "shape": list(t.shape),
        "device": device_name(t), "is_param": is_param,
    }
    # Megatron-style tensor-parallel marks, when present: set on the tensor (its __dict__) or
    # defined by its class; the four lookups are skipped for a plain tensor of a plain class.
    if t.__dict__ or _TP_ON_CLASS.get(type(t), True):
        _add_tp_attrs(t, attrs)
    return attrs


def _add_tp_attrs(t: Any, attrs: dict[str, AttrValue]) -> None:
    for a in _TP_ATTRS:
        v = getattr(t, a, None)
        if v is not None and _is_scalar(v):
            attrs[a] = v
    cls = type(t)
    if cls not in _TP_ON_CLASS and len(_TP_ON_CLASS) < 256:
        _TP_ON_CLASS[cls] = any(hasattr(cls, a) for a in _TP_ATTRS)


#: tensor class -> whether the class itself defines any tensor-parallel mark
_TP_ON_CLASS: dict[type, bool] = {}


class Content:
    """Fingerprints as precise as the plan asks (``InstrumentationPlan.content_mode``).

    Per variable and fingerprint attribute (``data``, ``grad``), one of three modes:

    * always: a fingerprint whenever the call may have changed it (as without a plan);
    * at step ends: between step ends the last fingerprint is carried (or ``SET`` when there
      is none yet) and the variable is remembered; when the step ends
      (:meth:`VariableTracker.observe_step_end`) its fingerprint is computed (a gradient's
      is read as the optimizer step that ends it begins, see
      :meth:`VariableTracker.hash_grads_early`). Only step-end states are read for content
      then, and a set/unset change is still seen at once;
    * never: ``SET`` when the attribute is set, so presence (all that preconditions and flag
      invariants read) is exact.

    A variable's mode follows its static attributes (name, type, is_param, dtype, device) but
    never goes down: once its content was needed it stays computed, so a variable that stops
    matching (e.g. a changed dtype) is never compared with a stale value.

    Where every invariant comparing a non-parameter's data only asks whether it changed
    (``InstrumentationPlan.content_by_writes``), a change token (:class:`Writes`) stands in for
    its fingerprint, unless ``exact``. Once a variable needed its fingerprint it keeps it.
    """

    def __init__(self, plan: InstrumentationPlan, exact: bool = False) -> None:
        self.plan = plan
        self.exact = exact
        # name -> (static key, data mode, grad mode, data by writes)
        self.modes: dict[str, tuple[Any, int, int, bool]] = {}
        self.pending: dict[str, tuple[Any, bool, int]] = {}  # name -> (tensor, is_param, what)
        #: some variable's gradient content is compared at every change (not only at step ends)
        self.grad_always = plan.content is None or any(
            r.attr == "grad" and not r.step_end for r in plan.content)

    def take_pending(self) -> dict[str, tuple[Any, bool, int]]:
        out, self.pending = self.pending, {}
        return out

    def _modes(self, name: str, t: Any, is_param: bool, dtype: str, device: str
               ) -> tuple[int, int, bool]:
        key = (type(t), is_param, dtype, device)
        hit = self.modes.get(name)
        if hit is not None and hit[0] == key:
            return hit[1:]
        static = {"name": name, "vtype": class_name(t), "is_param": is_param, "dtype": dtype,
                  "device": device}
        plan, exact = self.plan, self.exact
        dm, gm = plan.content_mode("data", static), plan.content_mode("grad", static)
        dw = not (exact or is_param) and plan.content_by_writes("data", static)
        if hit is not None:  # never lower a variable's mode, never go back to tokens
            dm, gm, dw = max(dm, hit[1]), max(gm, hit[2]), dw and hit[3]
        self.modes[name] = (key, dm, gm, dw)
        return dm, gm, dw

    def attrs(self, name: str, t: Any, prev: dict[str, AttrValue] | None, what: int,
              is_param: bool, at_end: bool) -> dict[str, AttrValue]:
        data, grad = self.values(name, t, prev, what, is_param, at_end)
        return {"data": data, "grad": grad, **static_attrs(t, is_param)}

    def modes_of(self, name: str, t: Any, is_param: bool, static: dict[str, AttrValue]
                 ) -> tuple[int, int, bool]:
        """(data mode, grad mode, data by writes) of a variable with static attributes
        ``static``."""
        return self._modes(name, t, is_param, static["dtype"], static["device"])

    def values(self, name: str, t: Any, prev: dict[str, AttrValue] | None, what: int,
               is_param: bool, at_end: bool) -> tuple[AttrValue, AttrValue]:
        """(data, grad) as precise as the plan asks (fingerprints, never change tokens: those
        need a variable's record of writes, which ``VariableTracker`` keeps); remembers what
        is owed at the step end."""
        dm, gm, _ = self._modes(name, t, is_param, dtype_name(t.dtype), device_name(t))
        old = prev or {}
        data, later_d = _content(t, old.get("data"), bool(what & DATA), dm, at_end, not prev)
        grad, later_g = _content(t.grad if is_param else None, old.get("grad"),
                                 bool(what & GRAD), gm, at_end, not prev)
        _owe(self.pending, name, t, is_param,
             (DATA if later_d else 0) | (GRAD if later_g else 0))
        return data, grad


def _content(x: Any, old: AttrValue, asked: bool, mode: int, at_end: bool, first: bool,
             writes: Writes | None = None, fp: Any = fingerprint) -> tuple[AttrValue, bool]:
    """A fingerprint attribute's value for tensor ``x`` (``None``: unset) whose last value was
    ``old``, and whether its fingerprint is owed at the step's end. ``asked``: the call may
    have changed it; ``first``: the variable's first state; ``writes``: its record of writes,
    whose change tokens stand in for fingerprints; ``fp``: the fingerprint function."""
    if x is None:
        return None, False
    if mode == CONTENT_NONE:
        return (SET if is_readable(x) else None), False
    if mode == CONTENT_ALWAYS or at_end or first:
        if asked or old is None or old == SET:
            return (fp(x) if writes is None else writes.value(x)), False
        return old, False
    # CONTENT_STEP_END between step ends: keep what the last step end computed
    if old is None:
        return (SET if is_readable(x) else None), True
    return old, True


def _owe(pending: dict[str, tuple[Any, bool, int]], name: str, t: Any, is_param: bool,
         later: int) -> None:
    """Record that ``name``'s fingerprints ``later`` are owed at the step's end (nothing when
    ``later`` is 0, but an entry for another tensor that held the name goes: a replaced
    layer's old tensor is not owed)."""
    if later:
        old = pending.get(name)
        pending[name] = (t, is_param, later | (old[2] if old else 0))
    elif name in pending and pending[name][0] is not t:
        del pending[name]
