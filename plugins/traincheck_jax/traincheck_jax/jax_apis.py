"""Probes on plain JAX: PRNG keys, ``jax.grad``/``value_and_grad``, ``jax.distributed``.

PRNG calls carry a fingerprint of the key data they consume and produce, so the same key
consumed in two steps (dropout masks identical across steps) is visible in the trace. Calls
made by JAX/Flax/Optax internals are not traced: only the user's own calls are.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from traincheck_core import Scalar

from .adapter import JaxAdapter, called_from_library
from .patching import Patches

__all__ = ["install_jax"]

RANDOM_ARGS = {"PRNGKey": ("seed",), "key": ("seed",), "split": ("key", "num"),
               "fold_in": ("key", "data")}


def install_jax(ad: JaxAdapter, jax: Any, patches: Patches) -> None:
    for name, params in RANDOM_ARGS.items():
        orig = getattr(jax.random, name, None)
        if orig is not None:
            patches.set(jax.random, name, _random(ad, name, params, orig))
    for name in ("grad", "value_and_grad"):
        patches.set(jax, name, _grad(ad, name, getattr(jax, name)))
    dist = getattr(jax, "distributed", None)
    if dist is not None and hasattr(dist, "initialize"):
        patches.set(dist, "initialize", _dist_init(ad, dist.initialize))


def _random(ad: JaxAdapter, name: str, params: tuple[str, ...], orig: Any) -> Any:
    api = f"jax.random.{name}"

    @functools.wraps(orig)
    def random_probe(*args: Any, **kwargs: Any) -> Any:
        if ad.bypass("random") or called_from_library():
            return orig(*args, **kwargs)

        def named() -> dict[str, Any]:
            out = dict(zip(params, args, strict=False))
            out.update(kwargs)
            return out

        return ad.call("random", api, orig, args, kwargs, named, keep_ret=True)

    return random_probe


def _grad(ad: JaxAdapter, kind: str, orig: Any) -> Any:
    @functools.wraps(orig)
    def grad(fun: Any, *a: Any, **kw: Any) -> Any:
        g = orig(fun, *a, **kw)
        if ad.bypass("grad") or called_from_library():
            return g
        try:
            return _observed_grad(ad, kind, fun, g, a, kw)
        except Exception as exc:
            ad.session.probe_failed("grad", exc)
            return g

    return grad


def _observed_grad(ad: JaxAdapter, kind: str, fun: Any, g: Any, a: tuple, kw: dict) -> Any:
    name = getattr(fun, "__qualname__", None) or getattr(fun, "__name__", "?")
    api = f"jax.{kind}.{name}"
    argnums = kw.get("argnums", a[0] if a else 0)
    has_aux = bool(kw.get("has_aux", a[1] if len(a) > 1 else False))
    try:
        names = list(inspect.signature(fun).parameters)
    except (TypeError, ValueError):
        names = []
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    arg_names = [names[i] if i < len(names) else f"arg{i}" for i in nums]

    def named(args: tuple, kwargs: dict) -> dict[str, Any]:
        out: dict[str, Any] = {"argnums": Scalar(str(list(nums))), "wrt": Scalar(
            ",".join(arg_names))}
        out.update({arg_names[j]: args[i] for j, i in enumerate(nums) if i < len(args)})
        return out

    def after(cid: int, out: Any) -> None:
        grads = out[1] if kind == "value_and_grad" else (out[0] if has_aux else out)
        trees = (grads,) if isinstance(argnums, int) else tuple(grads)
        for root, tree in zip(arg_names, trees, strict=False):
            ad.note_grads(tree, root)

    @functools.wraps(g)
    def grad_probe(*args: Any, **kwargs: Any) -> Any:
        return ad.call("grad", api, g, args, kwargs, lambda: named(args, kwargs), after)

    return grad_probe


def _dist_init(ad: JaxAdapter, orig: Any) -> Any:
    @functools.wraps(orig)
    def initialize(*args: Any, **kwargs: Any) -> Any:
        out = orig(*args, **kwargs)
        ad._safe("distributed", ad.ensure_rank)
        return out

    return initialize
