"""traincheck-torch: the PyTorch adapter for traincheck (plugin name ``torch``).

This module is the plugin: the hook implementations the core calls. It never imports torch at
module level, so listing plugins stays cheap; instrumentation is installed when torch is
imported (sessions start before the user's script runs).
"""

from __future__ import annotations

import argparse
from importlib import metadata
from typing import Any

from traincheck_core import Config, InstrumentationPlan, Session, UsageError, hookimpl

__version__ = "0.1.0"
TRAINCHECK_REQUIRES = ("torch>=2.1",)

_instrumentor: Any = None


def get_instrumentor() -> Any:
    """The process's :class:`~traincheck_torch.instrumentor.TorchInstrumentor`."""
    global _instrumentor
    if _instrumentor is None:
        from .instrumentor import TorchInstrumentor

        _instrumentor = TorchInstrumentor()
    return _instrumentor


@hookimpl
def traincheck_add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--torch-instrument", dest="torch_instrument", action="append", metavar="MODULE",
        type=_module_name,
        help="also trace the public functions and methods defined in MODULE (a package "
             "includes its submodules) once it is imported; repeatable")
    group.add_argument(
        "--torch-exact-content", dest="torch_exact_content", action="store_true",
        help="under --invariants, hash optimizer state and buffers wherever an invariant "
             "compares them, even where it only asks whether they changed (by default "
             "torch's count of in-place writes answers that once it has proven right for "
             "the variable; a write of identical values then counts as a change)")


def _module_name(value: str) -> str:
    from .user_code import valid_module_name

    if not valid_module_name(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a module name "
                                         "(expected a dotted name such as mypkg.models)")
    return value


@hookimpl
def traincheck_configure(config: Config) -> None:
    from .user_code import valid_module_name

    names = config.options.get("torch_instrument") or []
    if not isinstance(names, list):
        raise UsageError("torch_instrument must be a list of module names")
    for name in names:
        if not isinstance(name, str) or not valid_module_name(name):
            raise UsageError(f"--torch-instrument {name!r}: not a module name "
                             "(expected dotted names such as mypkg.models)")


@hookimpl
def traincheck_framework_versions() -> dict[str, str]:
    try:
        return {"torch": metadata.version("torch")}
    except metadata.PackageNotFoundError:
        return {}


@hookimpl
def traincheck_value_summarizers() -> dict[Any, Any]:
    from .summarize import tensor_summary

    return {"torch.Tensor": tensor_summary}


@hookimpl
def traincheck_instrument(session: Session, plan: InstrumentationPlan) -> None:
    get_instrumentor().instrument(session, plan)


@hookimpl
def traincheck_uninstrument(session: Session) -> None:
    if _instrumentor is not None:
        _instrumentor.uninstrument()


@hookimpl
def traincheck_api_catalog() -> list[str]:
    import torch  # noqa: F401  (the catalog is resolved against the installed torch)

    from .catalog import api_names

    return api_names()
