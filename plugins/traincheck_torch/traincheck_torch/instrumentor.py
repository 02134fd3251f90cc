"""TorchInstrumentor: installs and removes every probe of the PyTorch adapter.

Probes use torch's own hook points where they exist (global module forward hooks, global
optimizer step hooks, ``register_post_accumulate_grad_hook``) and reversible wrapt patches
elsewhere (see :mod:`.catalog`). Every probe fails open: an exception inside it is reported with
``session.probe_failed`` (logged once, that probe switched off) and never reaches the training
loop; :class:`traincheck_core.ViolationError` is let through on purpose (``probe_failed``
raises it again). All of traincheck's own
tensor work runs inside ``session.suppressed()`` and ``torch.no_grad()``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import msgspec
import wrapt

from traincheck_core import (
    InstrumentationPlan,
    ObjSummary,
    Scalar,
    Session,
    Summary,
    TensorSummary,
    type_name,
)

from .calls import CallTracer
from .catalog import ApiSpec, catalog, resolve
from .metavars import MetaState
from .naming import unwrap
from .patching import Patcher
from .summarize import module_summary, summarize_value
from .user_code import UserCodeInstrumentor
from .variables import ALL, GRAD, VariableTracker

__all__ = ["TorchInstrumentor", "FORWARD", "STEP"]

log = logging.getLogger("traincheck")
FORWARD = "torch.nn.Module.forward"
STEP = "torch.optim.Optimizer.step"
MAX_ARGS = 8
ARG_KEYS = tuple(str(i) for i in range(MAX_ARGS))  # summary keys of positional arguments
# Probes that keep meta variables (step, stage, epoch, rank, models/optimizers known): always on.
META_POSTS = frozenset({"opt_init", "ddp_init", "dist_init", "module_mode", "loader_iter",
                        "set_epoch"})
# Probes that observe variable states: on whenever the plan needs any variable state.
VARIABLE_POSTS = frozenset({"module_all", "module_grad", "register_param", "opt_grad", "opt_all",
                            "backward", "init_tensor", "clip", "unscale", "sched"})


class TorchInstrumentor:
    """Idempotent, reversible instrumentation of torch for one session."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.plan = InstrumentationPlan()
        self.installed = False
        self._hook_registered = False
        self._handles: list[Any] = []
        self._patcher = Patcher()
        self._families: dict[str, str] = {}
        # Optimizer methods patched on the base class, re-applied to subclasses that override
        # them (user or third-party optimizers, whenever they are defined).
        self._subclass_specs: list[ApiSpec] = []
        self._covered: set[type] = set()
        self.user_code = UserCodeInstrumentor(self._wrap_user)
        self._trace_step = True
        self._observe_vars = True
        self._forward_fp = True  # fingerprints in Module.forward's argument summaries

    # -- lifecycle ---------------------------------------------------------------------------
    def instrument(self, session: Session, plan: InstrumentationPlan) -> None:
        """Instrument torch now if it is imported, else as soon as it is."""
        if self.installed:
            return
        self.session, self.plan = session, plan
        if not self._hook_registered:
            self._hook_registered = True
            wrapt.when_imported("torch")(self._on_torch_import)
        elif "torch" in sys.modules:
            self._on_torch_import(sys.modules["torch"])

    def _on_torch_import(self, module: Any) -> None:
        if self.installed or self.session is None or self.session.closed:
            return
        try:
            self._install()
        except Exception as exc:  # fail open: the program runs untraced
            log.warning("traincheck-torch could not instrument torch and is off: %s: %s",
                        type(exc).__name__, exc)
            self.uninstrument()

    def uninstrument(self) -> None:
        """Remove every hook and patch (torch stays importable and behaves as before)."""
        for h in self._handles:
            try:
                h.remove()
            except Exception:
                pass
        self._handles.clear()
        self.user_code.stop()
        self._patcher.undo()
        self._subclass_specs.clear()
        self._covered.clear()
        if getattr(self, "vars", None) is not None:
            self.vars.uninstall()
        self.installed = False

    def _install(self) -> None:
        import torch

        s = self.session
        assert s is not None
        self.torch = torch
        self.tracer = CallTracer(s)
        self.vars = VariableTracker(s, self.plan)
        self.meta = MetaState(s)
        self._is_compiling = torch.compiler.is_compiling
        self.installed = True
        with self.quiet():
            self.meta.start()
        plan = self.plan
        self._forward_fp = plan.wants_arg_content(FORWARD)
        if plan.wants_api(FORWARD):
            from torch.nn.modules import module as nn_module

            self._handles.append(nn_module.register_module_forward_pre_hook(self._fwd_pre))
            self._handles.append(nn_module.register_module_forward_hook(self._fwd_post,
                                                                        always_call=True))
        # A plan that needs variable states needs every probe that observes variables (a
        # change is judged against the last observed state) and optimizer steps; the step
        # hooks also keep the `step` meta variable, so they are installed even when steps are
        # not traced (then they only count steps).
        observe_vars = self._observe_vars = plan.full or bool(plan.attributes or plan.variables)
        self._trace_step = plan.wants_api(STEP) or observe_vars
        from torch.optim import optimizer as optim_module

        self._watch_structure()
        self._handles.append(optim_module.register_optimizer_step_pre_hook(self._step_pre))
        self._handles.append(optim_module.register_optimizer_step_post_hook(self._step_post))
        for spec in catalog():
            if plan.wants_api(spec.api) or spec.post in META_POSTS or (
                    observe_vars and spec.post in VARIABLE_POSTS):
                self._patch(spec)
        self._install_user_code()

    def _watch_structure(self) -> None:
        """Count module and buffer registrations, so tracked models' buffers are looked up
        again only when some module tree changed (torch's global registration hooks)."""
        from torch.nn.modules import module as nn_module

        hooks: list[Any] = [getattr(nn_module, f"register_module_{kind}_registration_hook", None)
                            for kind in ("module", "buffer")]
        if all(hooks):
            self._handles += [register(self.vars.structure_changed) for register in hooks]
            self.vars.structure = 0

    def _patch(self, spec: ApiSpec) -> None:
        found = resolve(spec)
        if found is None:
            return
        owner, raw = found
        if isinstance(raw, wrapt.FunctionWrapper):
            return  # already ours (a second adapter instance must not stack wrappers)
        self._families[spec.api] = spec.family
        self._patcher.wrap(owner, spec.attr, raw, self._wrapper(spec))
        if spec.owner == "Optimizer" and spec.attr != "__init__":
            self._subclass_specs.append(spec)

    def _cover_subclass(self, cls: type) -> None:
        """Wrap the patched Optimizer methods that ``cls`` (or a base between it and
        Optimizer) overrides; the override would otherwise hide the base class's patch."""
        if cls in self._covered:
            return
        self._covered.add(cls)
        base = self.torch.optim.Optimizer
        for klass in cls.__mro__:
            if klass is base or not issubclass(klass, base):
                break
            for spec in self._subclass_specs:
                raw = vars(klass).get(spec.attr)
                if callable(raw) and not isinstance(raw, wrapt.FunctionWrapper):
                    self._patcher.wrap(klass, spec.attr, raw, self._wrapper(spec))

    def _wrap_user(self, owner: Any, attr: str, raw: Any, spec: ApiSpec) -> None:
        if not isinstance(raw, wrapt.FunctionWrapper):
            self._patcher.wrap(owner, attr, raw, self._wrapper(spec))

    def _install_user_code(self) -> None:
        assert self.session is not None
        names = self.session.config.options.get("torch_instrument") or []
        if names:
            self.user_code.watch(names)

    def quiet(self) -> _Quiet:
        """traincheck's own tensor work: untraced and outside autograd."""
        assert self.session is not None
        return _Quiet(self.session, self.torch)

    def _live(self, probe: str) -> Session | None:
        """The session if ``probe`` should run now, else None: never while torch.compile traces
        (its graph must not contain our code), nor when suppressed or the probe is switched off."""
        if self._is_compiling():
            return None
        s = self.session
        if s is None or probe in s.disabled_probes or s.is_suppressed():
            return None
        return s

    def _failed(self, probe: str, exc: BaseException) -> None:
        if self.session is not None:
            self.session.probe_failed(probe, exc)

    # -- module forward (global hooks) -------------------------------------------------------
    def _fwd_pre(self, mod: Any, args: tuple) -> None:
        s = self._live(FORWARD)
        if s is None:
            return None
        try:
            tr, names = self.tracer, self.vars.module_names
            stack = tr.stack()
            if not stack:
                self._top_forward(mod)
            fp = self._forward_fp
            summary: dict[str, Summary] = {"self": module_summary(mod, names)}
            for key, a in zip(ARG_KEYS, args, strict=False):  # at most MAX_ARGS
                summary[key] = summarize_value(s, a, names, 1, fp)
            tr.start(FORWARD, summary, id(mod), stack)
        except Exception as exc:
            self._failed(FORWARD, exc)
        return None

    def _top_forward(self, mod: Any) -> None:
        v = self.vars
        if not v.known_module(mod):
            inner = unwrap(mod)
            with self.quiet():
                v.track_model(inner)
            v.module_names[id(mod)] = v.module_names[id(inner)]
        if v.is_trained(mod) or not v.any_trained():
            self.meta.set_stage(mod.training, self.torch.is_grad_enabled(), bool(v.opts))
        self.meta.update_autocast()

    def _fwd_post(self, mod: Any, args: tuple, out: Any) -> None:
        s = self._live(FORWARD)
        if s is None:
            return None
        try:
            tr = self.tracer
            stack = tr.stack()
            cid = tr.pop(FORWARD, id(mod), stack)
            if not cid:
                return None
            exc = sys.exc_info()[1] if out is None else None
            if exc is not None:
                tr.error(cid, exc)
                return None
            if not stack and mod.training and self._observe_vars:
                self._observe_buffers(mod, cid)
            tr.end(cid, summarize_value(s, out, self.vars.module_names, 1, self._forward_fp))
        except Exception as exc:
            self._failed(FORWARD, exc)
        return None

    def _observe_buffers(self, mod: Any, cid: int) -> None:
        inner = unwrap(mod)
        entry = self.vars.models.get(id(inner))
        if entry is not None:
            with self.quiet():
                self.vars.observe(self.vars.buffer_vars(inner, entry.name), ALL, cid)

    # -- optimizer step (global hooks) -------------------------------------------------------
    def _step_pre(self, opt: Any, args: Any, kwargs: Any) -> None:
        s = self._live(STEP)
        if s is None or not self._trace_step:
            return None
        try:
            self._cover_subclass(type(opt))
            with self.quiet():
                self.vars.track_optimizer(opt)
                name = self.vars.opt_name(opt)
                if self._observe_vars and self.meta.ends_step(opt):
                    self.vars.hash_grads_early()
            self.tracer.start(STEP, {"self": ObjSummary(type_name(opt), {"name": Scalar(name)})},
                              id(opt))
        except Exception as exc:
            self._failed(STEP, exc)
        return None

    def _step_post(self, opt: Any, args: Any, kwargs: Any) -> None:
        s = self._live(STEP)
        if s is None:
            return None
        try:
            if not self._trace_step:
                self.meta.after_step(opt)
                return None
            cid = self.tracer.pop(STEP, id(opt))
            if not cid:
                return None
            if self._observe_vars:
                with self.quiet():
                    self.vars.observe_optimizer(opt, cid, self.meta.ends_step(opt))
            self.tracer.end(cid)
            self.meta.after_step(opt)
        except Exception as exc:
            self._failed(STEP, exc)
        return None

    # -- patched Python APIs -----------------------------------------------------------------
    def _wrapper(self, spec: ApiSpec) -> Callable[..., Any]:
        api, family = spec.api, spec.family
        post = getattr(self, f"_post_{spec.post}") if spec.post else None
        if spec.post in VARIABLE_POSTS and not self._observe_vars:
            post = None  # the plan needs no variable state
        prepare = self._prepare_clip if spec.post == "clip" else None
        summarize_args = self._init_args if spec.post == "init_tensor" else self._args
        families = self._families
        fp = self.plan.wants_arg_content(api)  # fingerprints in its summaries

        def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
            s = self.session
            if s is None or s.is_suppressed() or api in s.disabled_probes:
                return wrapped(*args, **kwargs)
            tr = self.tracer
            top = tr.top_api()
            if (family and top is not None and families.get(top) == family) \
                    or self._is_compiling():
                return wrapped(*args, **kwargs)
            try:
                if prepare is not None:
                    args, kwargs = prepare(args, kwargs)
                cid = tr.start(api, summarize_args(instance, args, kwargs, fp), 0)
            except Exception as exc:
                self._failed(api, exc)
                return wrapped(*args, **kwargs)
            try:
                ret = wrapped(*args, **kwargs)
            except BaseException as exc:
                self._finish_error(api, cid, exc)
                raise
            try:
                tr.pop(api, 0)
                if post is not None:
                    with self.quiet():
                        post(instance, args, kwargs, ret, cid)
                tr.end(cid, self._ret(ret, fp))
            except Exception as exc:
                self._failed(api, exc)
            return ret

        return wrapper

    def _finish_error(self, api: str, cid: int, exc: BaseException) -> None:
        try:
            self.tracer.pop(api, 0)
            self.tracer.error(cid, exc)
        except Exception as e:
            self._failed(api, e)

    def _args(self, instance: Any, args: tuple, kwargs: dict, fp: bool = True
              ) -> dict[str, Summary]:
        s, names = self.session, self.vars.module_names
        assert s is not None  # wrappers run only while a session is set
        out: dict[str, Summary] = {}
        if instance is not None and not isinstance(instance, type):
            out["self"] = summarize_value(s, instance, names, 2, fp)
        for key, a in zip(ARG_KEYS, args, strict=False):
            out[key] = summarize_value(s, a, names, 2, fp)
        for k, v in list(kwargs.items())[:MAX_ARGS]:
            out[k] = summarize_value(s, v, names, 2, fp)
        return out

    def _init_args(self, instance: Any, args: tuple, kwargs: dict, fp: bool = True
                   ) -> dict[str, Summary]:
        """Arguments of ``torch.nn.init.*_``, which overwrite their tensor: its content before
        the call is whatever the memory held (``torch.empty``), so it gets no fingerprint.
        Fingerprints of garbage are equal or distinct by chance (fresh zero pages hash
        alike), and inference would learn relations over them that another run breaks."""
        out = self._args(instance, args, kwargs, fp)
        for key in ("0", "tensor"):
            summary = out.get(key)
            if isinstance(summary, TensorSummary) and summary.fp is not None:
                out[key] = msgspec.structs.replace(summary, fp=None)
        return out

    def _ret(self, ret: Any, fp: bool = True) -> Summary | None:
        if ret is None or self.session is None:
            return None
        return summarize_value(self.session, ret, self.vars.module_names, 1, fp)

    @staticmethod
    def _prepare_clip(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        # A generator of parameters would be used up by our observation: pass a list instead.
        if args and not isinstance(args[0], (list, tuple)) and hasattr(args[0], "__next__"):
            args = (list(args[0]), *args[1:])
        elif "parameters" in kwargs and hasattr(kwargs["parameters"], "__next__"):
            kwargs = {**kwargs, "parameters": list(kwargs["parameters"])}
        return args, kwargs

    # -- observations after calls (run inside quiet()) ---------------------------------------
    def _post_module_mode(self, mod: Any, args: tuple, kwargs: dict, ret: Any, cid: int
                          ) -> None:
        v = self.vars
        if v.is_trained(mod) or (not v.any_trained() and v.known_module(mod)):
            self.meta.set_stage(mod.training, True, bool(v.opts))

    def _post_module_all(self, mod: Any, args: tuple, kwargs: dict, ret: Any, cid: int
                         ) -> None:
        if self.vars.models:
            self.vars.observe(self.vars.all_model_vars(), ALL, cid)

    def _post_module_grad(self, mod: Any, args: tuple, kwargs: dict, ret: Any, cid: int
                          ) -> None:
        self.vars.observe(self.vars.param_vars(mod.parameters()), GRAD, cid)

    def _post_register_param(self, mod: Any, args: tuple, kwargs: dict, ret: Any, cid: int
                             ) -> None:
        if self.vars.known_module(mod):
            for m in list(self.vars.models.values()):
                inner = m.ref()
                if inner is not None:
                    self.vars._index_model(inner, m.name)
            self.vars.observe(self.vars.all_model_vars(), ALL, cid)

    def _post_opt_init(self, opt: Any, args: tuple, kwargs: dict, ret: Any, cid: int) -> None:
        self._cover_subclass(type(opt))
        self.vars.track_optimizer(opt, cid)

    def _post_opt_grad(self, opt: Any, args: tuple, kwargs: dict, ret: Any, cid: int) -> None:
        self.vars.observe(self.vars.param_vars(self.vars.opt_params(opt)), GRAD, cid)

    def _post_opt_all(self, opt: Any, args: tuple, kwargs: dict, ret: Any, cid: int) -> None:
        if id(opt) not in self.vars.opts:
            return  # add_param_group during construction: the optimizer is tracked after it
        self.vars.opts[id(opt)].params = self.vars.opt_params(opt)
        self.vars.observe(self.vars.param_vars(self.vars.opt_params(opt)), ALL, cid)
        self.vars.observe(self.vars.state_vars(opt), ALL, cid)
        self.vars.observe_hparams(opt, cid)

    def _post_backward(self, instance: Any, args: tuple, kwargs: dict, ret: Any, cid: int
                       ) -> None:
        dirty = self.vars.take_dirty()
        if dirty:
            self.vars.observe(self.vars.param_vars(dirty), GRAD, cid)

    def _post_init_tensor(self, instance: Any, args: tuple, kwargs: dict, ret: Any, cid: int
                          ) -> None:
        t = args[0] if args else kwargs.get("tensor")
        if t is not None:
            self.vars.observe(self.vars.param_vars([t]), ALL, cid)

    def _post_clip(self, instance: Any, args: tuple, kwargs: dict, ret: Any, cid: int) -> None:
        if not self.vars.in_place_grad_edits_matter():
            return
        params = args[0] if args else kwargs.get("parameters")
        if isinstance(params, self.torch.Tensor):
            params = [params]
        if params is not None:
            self.vars.observe(self.vars.param_vars(params), GRAD, cid)

    def _post_unscale(self, scaler: Any, args: tuple, kwargs: dict, ret: Any, cid: int) -> None:
        opt = args[0] if args else kwargs.get("optimizer")
        if opt is not None and self.vars.in_place_grad_edits_matter():
            self._post_opt_grad(opt, (), {}, None, cid)

    def _post_sched(self, sched: Any, args: tuple, kwargs: dict, ret: Any, cid: int) -> None:
        opt = getattr(sched, "optimizer", None)
        if opt is not None and id(opt) in self.vars.opts:
            self.vars.observe_hparams(opt, cid)

    def _post_dist_init(self, instance: Any, args: tuple, kwargs: dict, ret: Any, cid: int
                        ) -> None:
        self.meta.update_dist()

    def _post_ddp_init(self, ddp: Any, args: tuple, kwargs: dict, ret: Any, cid: int) -> None:
        inner = unwrap(ddp)
        self.vars.track_model(inner, call=cid)
        self.vars.module_names[id(ddp)] = self.vars.module_names[id(inner)]

    def _post_loader_iter(self, loader: Any, args: tuple, kwargs: dict, ret: Any, cid: int
                          ) -> None:
        self.meta.on_loader_iter(loader)

    def _post_set_epoch(self, sampler: Any, args: tuple, kwargs: dict, ret: Any, cid: int
                        ) -> None:
        self.meta.on_set_epoch(args[0] if args else kwargs.get("epoch"))


class _Quiet:
    """``TorchInstrumentor.quiet()``: ``session.suppressed()`` and ``torch.no_grad()`` in one
    class (most probes enter one, and two generator-based context managers cost more than the
    rest of a small probe)."""

    __slots__ = ("_off", "_torch", "_grad")

    def __init__(self, session: Session, torch: Any) -> None:
        self._off = session.suppressed()
        self._torch = torch

    def __enter__(self) -> None:
        self._off.__enter__()
        self._grad = self._torch.is_grad_enabled()
        self._torch._C._set_grad_enabled(False)

    def __exit__(self, *exc: object) -> None:
        self._torch._C._set_grad_enabled(self._grad)
        self._off.__exit__(None, None, None)
