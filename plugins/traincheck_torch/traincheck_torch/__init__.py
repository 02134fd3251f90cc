"""traincheck-torch: the PyTorch adapter for traincheck (plugin name ``torch``).

This module is the plugin: the hook implementations the core calls. It never imports torch at
module level, so listing plugins stays cheap; instrumentation is installed when torch is
imported (sessions start before the user's script runs).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from traincheck_core import InstrumentationPlan, Session, hookimpl

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
