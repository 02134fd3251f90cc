"""The ``jax`` traincheck plugin: hook implementations only; JAX is imported lazily."""

from __future__ import annotations

import importlib.metadata as md
from typing import Any

from traincheck_core import hookimpl

from .instrumentor import INSTRUMENTOR

TRAINCHECK_REQUIRES = ("jax>=0.4.30",)


@hookimpl
def traincheck_framework_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in ("jax", "jaxlib", "optax", "flax"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


@hookimpl
def traincheck_instrument(session: Any, plan: Any) -> None:
    INSTRUMENTOR.instrument(session)


@hookimpl
def traincheck_uninstrument(session: Any) -> None:
    INSTRUMENTOR.uninstrument()
