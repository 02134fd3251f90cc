"""Summaries and fingerprints of JAX arrays, PRNG keys and tracers.

Only concrete arrays are ever read: a tracer (inside ``jit``/``grad``/``vmap`` tracing) is
summarized by its abstract value (shape, dtype) alone, so nothing here can concretize it or
add an operation to the program being compiled. JAX arrays are immutable, so a fingerprint is
cached per array object and a parameter that flows unchanged into the next step is not read
again.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from traincheck_core import TensorSummary

__all__ = ["ArrayKit", "MAX_ARG_ELEMENTS", "content_fingerprint"]

#: Call arguments larger than this (elements) are summarized without a fingerprint; tracked
#: variables and PRNG keys are always fingerprinted.
MAX_ARG_ELEMENTS = 1 << 16


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_weights = np.zeros(0, dtype=np.uint64)


def _position_weights(n: int) -> np.ndarray:
    """Odd pseudo-random 64-bit weights for positions ``0..n-1`` (one shared, growing array,
    so memory is bounded by the largest array seen)."""
    global _weights
    if len(_weights) < n:
        w = np.arange(1, n + 1, dtype=np.uint64) * _GOLD
        w ^= w >> np.uint64(31)
        w *= _M1
        w ^= w >> np.uint64(29)
        w |= np.uint64(1)
        _weights = w
    return _weights[:n]


def content_fingerprint(host: np.ndarray) -> str:
    """64-bit fingerprint of every byte of ``host`` and its position, about 8x faster than
    blake2b (a few vectorized passes, no Python loop per element).

    Each 8-byte word goes through a bijective mix and is multiplied by an odd weight of its
    position; the words are summed modulo 2**64. Any change of a single word therefore always
    changes the fingerprint (a bijection, then a multiplication by an odd number), as does
    moving a value to another position; the length is mixed in last.
    """
    b = np.ascontiguousarray(host).reshape(-1).view(np.uint8)
    pad = (-len(b)) % 8
    if pad:
        b = np.concatenate([b, np.zeros(pad, np.uint8)])
    v = b.view(np.uint64)
    m = v >> np.uint64(29)
    m ^= v
    m *= _M1
    m ^= m >> np.uint64(32)
    m *= _position_weights(len(v))
    return f"{int(np.add.reduce(m, dtype=np.uint64)) ^ (len(b) - pad):016x}"


class ArrayKit:
    """Array helpers bound to an imported ``jax`` (created in the post-import hook)."""

    def __init__(self, jax: Any) -> None:
        from jax import core

        self.jax = jax
        self.Tracer = core.Tracer
        self.Array = jax.Array
        self.prng_key = jax.dtypes.prng_key
        self._fp_cache: dict[int, tuple[Any, str | None]] = {}

    # -- classification ------------------------------------------------------------------
    def is_tracer(self, x: Any) -> bool:
        return isinstance(x, self.Tracer)

    def is_array(self, x: Any) -> bool:
        return isinstance(x, (self.Array, np.ndarray)) and not isinstance(x, self.Tracer)

    def is_key(self, x: Any) -> bool:
        dt = getattr(x, "dtype", None)
        if dt is None:
            return False
        try:
            return bool(self.jax.dtypes.issubdtype(dt, self.prng_key))
        except TypeError:
            return False

    def any_tracer(self, leaves: list[Any]) -> bool:
        tracer = self.Tracer
        return any(isinstance(x, tracer) for x in leaves)

    # -- fingerprints ----------------------------------------------------------------------
    def fingerprint(self, x: Any) -> str | None:
        """Content fingerprint of a concrete array (host copy); ``None`` if it cannot be read
        here (a tracer, a deleted/donated buffer, an array spread over other processes)."""
        if isinstance(x, self.Tracer):
            return None
        key = id(x)
        hit = self._fp_cache.get(key)
        if hit is not None and hit[0]() is x:
            return hit[1]
        fp = self._compute_fp(x)
        try:
            ref = weakref.ref(x, lambda _r, k=key: self._fp_cache.pop(k, None))
        except TypeError:  # numpy scalars and other non-weakrefable values: no caching
            return fp
        self._fp_cache[key] = (ref, fp)
        return fp

    def _compute_fp(self, x: Any) -> str | None:
        if isinstance(x, self.Array):
            if x.is_deleted() or not x.is_fully_addressable:
                return None
            if self.is_key(x):
                x = self.jax.random.key_data(x)
        return content_fingerprint(np.asarray(x))

    # -- summaries -------------------------------------------------------------------------
    def device_of(self, x: Any) -> str:
        if isinstance(x, np.ndarray):
            return "host"
        try:
            devs = x.devices()
            return str(next(iter(devs))) if len(devs) == 1 else f"{len(devs)} devices"
        except Exception:
            return "?"

    def dtype_of(self, x: Any) -> str:
        return str(getattr(x, "dtype", "?"))

    def summarize(self, x: Any, *, fingerprint: bool | None = None) -> TensorSummary:
        """A bounded summary; tracers keep only shape and dtype."""
        shape = [int(d) for d in getattr(x, "shape", ())]
        if isinstance(x, self.Tracer):
            return TensorSummary("jax.Tracer", shape, self.dtype_of(x), "traced")
        if fingerprint is None:
            fingerprint = self.is_key(x) or int(np.prod(shape)) <= MAX_ARG_ELEMENTS
        extra: dict[str, Any] = {}
        if self.is_key(x):
            extra["prng_key"] = True
        sharding = getattr(x, "sharding", None)
        if sharding is not None and type(sharding).__name__ != "SingleDeviceSharding":
            extra["sharding"] = str(sharding)
        tname = "numpy.ndarray" if isinstance(x, np.ndarray) else "jax.Array"
        return TensorSummary(tname, shape, self.dtype_of(x), self.device_of(x),
                             self.fingerprint(x) if fingerprint else None, extra)

    def summarize_nested(self, x: Any) -> TensorSummary:
        """An array inside a container: fingerprinted only if it is a PRNG key."""
        return self.summarize(x, fingerprint=self.is_key(x))

    def var_attrs(self, x: Any, grad_fp: str | None) -> dict[str, Any]:
        """Flat ``VarState`` attributes of a concrete array leaf."""
        attrs: dict[str, Any] = {
            "data": self.fingerprint(x), "grad": grad_fp, "dtype": self.dtype_of(x),
            "shape": [int(d) for d in x.shape], "device": self.device_of(x)}
        sharding = getattr(x, "sharding", None)
        if sharding is not None:
            attrs["sharding"] = str(sharding)
        return attrs
