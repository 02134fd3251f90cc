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


@hookimpl(tryfirst=True)  # before the online checker closes: the last step's events
def traincheck_session_finish(session: Any, reason: str) -> None:
    INSTRUMENTOR.flush()


@hookimpl
def traincheck_uninstrument(session: Any) -> None:
    INSTRUMENTOR.uninstrument()


#: Fixed API names; ``jax.jit.<qualname>``, ``jax.pmap.<qualname>``, ``jax.grad.<qualname>``
#: and ``jax.value_and_grad.<qualname>`` are families named after the user's function.
API_CATALOG = (
    "jax.jit.*", "jax.pmap.*", "jax.grad.*", "jax.value_and_grad.*",
    "jax.random.PRNGKey", "jax.random.key", "jax.random.split", "jax.random.fold_in",
    "optax.GradientTransformation.init", "optax.GradientTransformation.update",
    "optax.apply_updates", "flax.linen.Module.apply", "flax.linen.Dropout.__call__",
    "flax.training.train_state.TrainState.apply_gradients", "flax.nnx.Optimizer.update",
    "flax.nnx.Module.train", "flax.nnx.Module.eval", "flax.nnx.Dropout.__call__",
)


@hookimpl
def traincheck_api_catalog() -> list[str]:
    return list(API_CATALOG)
