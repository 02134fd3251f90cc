"""The catalog of instrumented torch APIs, resolved against the installed torch.

Each :class:`ApiSpec` names an API by its canonical public name (the generic class, so that
invariants transfer across programs; the concrete class is in ``args["self"].type``), where it
lives, what to observe after it returns (``post``) and its ``family``: a call made while a call
of the same family is running is an implementation detail (``eval`` calling ``train``,
``Tensor.backward`` calling ``autograd.backward``) and is not traced again.

Families of functions (``torch.nn.init.*``, collectives) are expanded by introspection, and
entries missing from the installed torch are left out, so a new torch release needs no edits.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["ApiSpec", "HOOKED", "catalog", "resolve", "api_names"]


@dataclass(frozen=True)
class ApiSpec:
    api: str  # canonical name
    module: str  # where the owner lives
    owner: str | None  # class name inside ``module``, or None for a module-level function
    attr: str
    post: str = ""  # observation after the call (see TorchInstrumentor._post_*)
    family: str = ""


#: APIs observed through torch's own hook points rather than patching.
HOOKED = ("torch.nn.Module.forward", "torch.optim.Optimizer.step")

_M, _O = "torch.nn.modules.module", "torch.optim.optimizer"
_STATIC: tuple[ApiSpec, ...] = (
    ApiSpec("torch.nn.Module.train", _M, "Module", "train", "module_mode", "mode"),
    ApiSpec("torch.nn.Module.eval", _M, "Module", "eval", "module_mode", "mode"),
    *(ApiSpec(f"torch.nn.Module.{a}", _M, "Module", a, "module_all", "apply")
      for a in ("to", "cpu", "cuda", "double", "float", "half", "bfloat16", "type",
                "to_empty", "requires_grad_")),
    ApiSpec("torch.nn.Module.load_state_dict", _M, "Module", "load_state_dict", "module_all",
            "state"),
    ApiSpec("torch.nn.Module.state_dict", _M, "Module", "state_dict", "", "state"),
    ApiSpec("torch.nn.Module.zero_grad", _M, "Module", "zero_grad", "module_grad", "zero"),
    ApiSpec("torch.nn.Module.register_parameter", _M, "Module", "register_parameter",
            "register_param", "register"),
    ApiSpec("torch.optim.Optimizer.__init__", _O, "Optimizer", "__init__", "opt_init",
            "optinit"),
    ApiSpec("torch.optim.Optimizer.zero_grad", _O, "Optimizer", "zero_grad", "opt_grad", "zero"),
    ApiSpec("torch.optim.Optimizer.add_param_group", _O, "Optimizer", "add_param_group",
            "opt_all", "optinit"),
    ApiSpec("torch.optim.Optimizer.state_dict", _O, "Optimizer", "state_dict", "", "state"),
    ApiSpec("torch.optim.Optimizer.load_state_dict", _O, "Optimizer", "load_state_dict",
            "opt_all", "state"),
    ApiSpec("torch.optim.lr_scheduler.LRScheduler.step", "torch.optim.lr_scheduler",
            "LRScheduler", "step", "sched", "sched"),
    ApiSpec("torch.optim.lr_scheduler.ReduceLROnPlateau.step", "torch.optim.lr_scheduler",
            "ReduceLROnPlateau", "step", "sched", "sched"),
    ApiSpec("torch.Tensor.backward", "torch._tensor", "Tensor", "backward", "backward",
            "backward"),
    ApiSpec("torch.autograd.backward", "torch.autograd", None, "backward", "backward",
            "backward"),
    ApiSpec("torch.autograd.grad", "torch.autograd", None, "grad", "", "backward"),
    ApiSpec("torch.nn.utils.clip_grad_norm_", "torch.nn.utils", None, "clip_grad_norm_",
            "clip", "clip"),
    ApiSpec("torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad", None,
            "clip_grad_norm_", "clip", "clip"),
    ApiSpec("torch.nn.utils.clip_grad_value_", "torch.nn.utils", None, "clip_grad_value_",
            "clip", "clip"),
    ApiSpec("torch.nn.utils.clip_grad_value_", "torch.nn.utils.clip_grad", None,
            "clip_grad_value_", "clip", "clip"),
    ApiSpec("torch.nn.utils.clip_grads_with_norm_", "torch.nn.utils", None,
            "clip_grads_with_norm_", "clip", "clip"),
    ApiSpec("torch.amp.GradScaler.scale", "torch.amp.grad_scaler", "GradScaler", "scale"),
    ApiSpec("torch.amp.GradScaler.unscale_", "torch.amp.grad_scaler", "GradScaler", "unscale_",
            "unscale", "scaler"),
    ApiSpec("torch.amp.GradScaler.step", "torch.amp.grad_scaler", "GradScaler", "step", "",
            ""),
    ApiSpec("torch.amp.GradScaler.update", "torch.amp.grad_scaler", "GradScaler", "update"),
    ApiSpec("torch.distributed.init_process_group", "torch.distributed", None,
            "init_process_group", "dist_init", "dist_init"),
    ApiSpec("torch.distributed.init_process_group", "torch.distributed.distributed_c10d", None,
            "init_process_group", "dist_init", "dist_init"),
    ApiSpec("torch.distributed.destroy_process_group", "torch.distributed", None,
            "destroy_process_group"),
    ApiSpec("torch.nn.parallel.DistributedDataParallel.__init__",
            "torch.nn.parallel.distributed", "DistributedDataParallel", "__init__", "ddp_init",
            "ddp"),
    ApiSpec("torch.utils.data.DataLoader.__iter__", "torch.utils.data.dataloader", "DataLoader",
            "__iter__", "loader_iter", "loader"),
    ApiSpec("torch.utils.data.DistributedSampler.set_epoch",
            "torch.utils.data.distributed", "DistributedSampler", "set_epoch", "set_epoch"),
    ApiSpec("torch.save", "torch", None, "save", "", "io"),
    ApiSpec("torch.load", "torch", None, "load", "", "io"),
    ApiSpec("torch.compile", "torch", None, "compile", "", "compile"),
)

_COLLECTIVES = ("all_reduce", "broadcast", "all_gather", "all_gather_into_tensor",
                "reduce_scatter", "reduce_scatter_tensor", "reduce", "gather", "scatter",
                "barrier", "all_to_all", "all_to_all_single", "broadcast_object_list",
                "all_gather_object")


def _expanded() -> list[ApiSpec]:
    import torch.nn.init as init

    out = [ApiSpec(f"torch.nn.init.{n}", "torch.nn.init", None, n, "init_tensor", "init")
           for n in sorted(vars(init)) if n.endswith("_") and not n.startswith("_")
           and callable(getattr(init, n))]
    for n in _COLLECTIVES:
        for mod in ("torch.distributed", "torch.distributed.distributed_c10d"):
            out.append(ApiSpec(f"torch.distributed.{n}", mod, None, n, "", "collective"))
    return out


def resolve(spec: ApiSpec) -> tuple[Any, Any] | None:
    """``(owner object, original attribute)`` in the installed torch, or None if absent."""
    try:
        owner: Any = importlib.import_module(spec.module)
        if spec.owner:
            owner = getattr(owner, spec.owner)
        raw = vars(owner).get(spec.attr)
    except (ImportError, AttributeError):
        return None
    if raw is None or not callable(getattr(owner, spec.attr, None)):
        return None
    return owner, raw


def catalog() -> list[ApiSpec]:
    """Every patchable API of the installed torch (needs torch imported)."""
    return [s for s in (*_STATIC, *_expanded()) if resolve(s) is not None]


def api_names() -> list[str]:
    """Canonical names of everything the adapter can trace with the installed torch."""
    return sorted({*HOOKED, *(s.api for s in catalog())})
