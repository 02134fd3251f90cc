"""Summaries and fingerprints of JAX arrays, PRNG keys and tracers.

Only concrete arrays are ever read: a tracer (inside ``jit``/``grad``/``vmap`` tracing) is
summarized by its abstract value (shape, dtype) alone, so nothing here can concretize it or
add an operation to the program being compiled. JAX arrays are immutable, so a fingerprint is
cached per JAX array object and a parameter that flows unchanged into the next step is not
read again (a NumPy array may be written in place: it is read every time). Everything an
array's summary says besides its fingerprint (dtype and device names, sharding,
PRNG-key-ness, element count) depends only on its shape, dtype and sharding, so it is
computed once per such triple (``str(dtype)`` alone costs more than hashing a small array).
"""

from __future__ import annotations

import math
import weakref
from typing import Any, NamedTuple

import numpy as np
import xxhash

from traincheck_core import TensorSummary

__all__ = ["ArrayKit", "ArrayMeta", "MAX_ARG_ELEMENTS", "content_fingerprint"]

#: Call arguments larger than this (elements) are summarized without a fingerprint; tracked
#: variables and PRNG keys are always fingerprinted.
MAX_ARG_ELEMENTS = 1 << 16
#: Distinct (shape, dtype, sharding) triples remembered; a program has a few dozen.
_META_CACHE_MAX = 4096


def content_fingerprint(host: Any) -> str:
    """64-bit fingerprint (XXH3) of every byte of ``host`` in order, so any changed byte or
    moved value changes it; the byte length is part of the hash. XXH3 runs at memory speed
    and releases the GIL (``np.asarray`` of a CPU JAX array is a zero-copy view)."""
    if host.flags.c_contiguous:  # the usual case: hash the buffer as it is
        try:
            return xxhash.xxh3_64_hexdigest(host)
        except (TypeError, ValueError, BufferError):  # a dtype the buffer protocol lacks
            pass
    raw: Any = np.ascontiguousarray(host).reshape(-1).view(np.uint8)
    return xxhash.xxh3_64_hexdigest(raw)


_UNREAD = object()  # a fingerprint not computed yet


class ArrayMeta(NamedTuple):
    """What a summary says about an array besides its content."""

    dtype: str
    shape: tuple[int, ...]
    size: int
    device: str
    sharding: str | None  # str(sharding), for variable attributes
    extra: dict[str, Any]  # TensorSummary.extra (prng_key, a non-trivial sharding)
    key: bool  # a typed PRNG key array (fingerprinted through its key data)
    readable: bool  # every shard is addressable from this process
    base: dict[str, Any]  # the VarState attributes besides the fingerprints (never mutated)


class _KeyedRef(weakref.ref):
    """A weak reference that knows its array's key in the cache (one callback for all)."""

    __slots__ = ("key",)


class ArrayKit:
    """Array helpers bound to an imported ``jax`` (created in the post-import hook)."""

    def __init__(self, jax: Any) -> None:
        from jax import core

        self.jax = jax
        self.Tracer = core.Tracer
        self.Array = jax.Array
        self.prng_key = jax.dtypes.prng_key
        # per live JAX array: [weakref, ArrayMeta, fingerprint or _UNREAD]
        self._seen: dict[int, list[Any]] = {}
        self._meta: dict[Any, ArrayMeta] = {}
        # (shape, dtype, id(sharding)) -> (sharding, meta): hashing and comparing a JAX
        # sharding runs Python (microseconds per leaf); its identity is enough while the
        # entry holds the sharding alive (so its id cannot be reused)
        self._meta_by_id: dict[tuple[Any, Any, int], tuple[Any, ArrayMeta]] = {}
        self._dtype_names: dict[Any, str] = {}

    # -- classification ------------------------------------------------------------------
    def is_tracer(self, x: Any) -> bool:
        return isinstance(x, self.Tracer)

    def is_array(self, x: Any) -> bool:
        return isinstance(x, (self.Array, np.ndarray)) and not isinstance(x, self.Tracer)

    def is_key(self, x: Any) -> bool:
        dt = getattr(x, "dtype", None)
        return dt is not None and self._is_key_dtype(dt)

    def _is_key_dtype(self, dt: Any) -> bool:
        try:
            return bool(self.jax.dtypes.issubdtype(dt, self.prng_key))
        except TypeError:
            return False

    def any_tracer(self, leaves: list[Any]) -> bool:
        tracer = self.Tracer
        return any(isinstance(x, tracer) for x in leaves)

    # -- metadata ----------------------------------------------------------------------------
    def _entry(self, x: Any) -> list[Any]:
        """What is known about the JAX array ``x``, kept while it lives: an array is
        immutable, and a step's outputs are summarized, fingerprinted and described as
        variables in turn (each lookup by shape/dtype/sharding costs about 1 us)."""
        key = id(x)
        e = self._seen.get(key)
        if e is not None and e[0]() is x:
            return e
        try:
            ref = _KeyedRef(x, self._forget)
        except TypeError:  # an array type without weak references: nothing is kept
            return [None, self._meta_of(x), _UNREAD]
        ref.key = key
        e = [ref, self._meta_of(x), _UNREAD]
        self._seen[key] = e
        return e

    def _forget(self, ref: Any) -> None:
        e = self._seen.get(ref.key)
        if e is not None and e[0] is ref:
            del self._seen[ref.key]

    def meta(self, x: Any) -> ArrayMeta:
        """:class:`ArrayMeta` of a concrete array (JAX or NumPy)."""
        if isinstance(x, self.Array):
            return self._entry(x)[1]
        return self._meta_of(x)

    def _meta_of(self, x: Any) -> ArrayMeta:
        sharding = None if isinstance(x, np.ndarray) else getattr(x, "sharding", None)
        if sharding is not None:
            fast = (x.shape, x.dtype, id(sharding))
            hit = self._meta_by_id.get(fast)
            if hit is not None and hit[0] is sharding:
                return hit[1]
            m = self._meta_by_key(x, sharding)
            if len(self._meta_by_id) >= _META_CACHE_MAX:
                self._meta_by_id.clear()
            self._meta_by_id[fast] = (sharding, m)
            return m
        return self._meta_by_key(x, None)

    def _meta_by_key(self, x: Any, sharding: Any) -> ArrayMeta:
        k = (x.shape, x.dtype, sharding)
        try:
            return self._meta[k]
        except KeyError:
            pass
        except TypeError:  # an unhashable sharding: compute every time
            return self._compute_meta(x, sharding)
        m = self._compute_meta(x, sharding)
        if len(self._meta) >= _META_CACHE_MAX:
            self._meta.clear()
        self._meta[k] = m
        return m

    def _compute_meta(self, x: Any, sharding: Any) -> ArrayMeta:
        shape = tuple(int(d) for d in x.shape)
        key = self._is_key_dtype(x.dtype)
        extra: dict[str, Any] = {"prng_key": True} if key else {}
        if sharding is not None and type(sharding).__name__ != "SingleDeviceSharding":
            extra["sharding"] = str(sharding)
        readable = bool(getattr(x, "is_fully_addressable", True))
        dtype, device = self.dtype_of(x), self.device_of(x)
        text = None if sharding is None else str(sharding)
        base: dict[str, Any] = {"dtype": dtype, "shape": list(shape), "device": device}
        if text is not None:
            base["sharding"] = text
        return ArrayMeta(dtype, shape, math.prod(shape), device, text, extra, key, readable,
                         base)

    # -- fingerprints ----------------------------------------------------------------------
    def fingerprint(self, x: Any) -> str | None:
        """Content fingerprint of a concrete array (host copy); ``None`` if it cannot be read
        here (a tracer, a deleted/donated buffer, an array spread over other processes).
        A JAX array's is computed once; a NumPy array's every time (it may be written to)."""
        if isinstance(x, self.Tracer):
            return None
        if not isinstance(x, self.Array):
            return content_fingerprint(np.asarray(x))
        e = self._entry(x)
        if e[2] is _UNREAD:
            e[2] = self._device_fp(x, e[1])
        return e[2]

    def _device_fp(self, x: Any, m: ArrayMeta) -> str | None:
        if not m.readable or x.is_deleted():
            return None
        if m.key:
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
        dt = getattr(x, "dtype", "?")
        try:
            return self._dtype_names[dt]
        except KeyError:
            name = self._dtype_names[dt] = str(dt)
            return name
        except TypeError:
            return str(dt)

    def summarize(self, x: Any, *, fingerprint: bool | None = None) -> TensorSummary:
        """A bounded summary; tracers keep only shape and dtype."""
        if isinstance(x, self.Tracer):
            return TensorSummary("jax.Tracer", [int(d) for d in x.shape], self.dtype_of(x),
                                 "traced")
        m = self.meta(x)
        if fingerprint is None:
            fingerprint = m.key or m.size <= MAX_ARG_ELEMENTS
        return self._summary(x, m, fingerprint)

    def summarize_nested(self, x: Any) -> TensorSummary:
        """An array inside a container: fingerprinted only if it is a PRNG key."""
        if isinstance(x, self.Tracer):
            return self.summarize(x)
        m = self.meta(x)
        return self._summary(x, m, m.key)

    def _summary(self, x: Any, m: ArrayMeta, fingerprint: bool) -> TensorSummary:
        tname = "numpy.ndarray" if isinstance(x, np.ndarray) else "jax.Array"
        return TensorSummary(tname, list(m.shape), m.dtype, m.device,
                             self.fingerprint(x) if fingerprint else None,
                             dict(m.extra) if m.extra else {})

    def var_attrs(self, x: Any, data_fp: str | None, grad_fp: str | None) -> dict[str, Any]:
        """Flat ``VarState`` attributes of a concrete array leaf whose fingerprint is
        ``data_fp``."""
        return self.attrs_of(self.meta(x), data_fp, grad_fp)

    @staticmethod
    def attrs_of(m: ArrayMeta, data_fp: str | None, grad_fp: str | None) -> dict[str, Any]:
        return {"data": data_fp, "grad": grad_fp, **m.base}

    def state_of(self, x: Any) -> tuple[str | None, ArrayMeta]:
        """Fingerprint and metadata of a concrete array leaf with one cache lookup (a
        training step reads every tracked leaf twice: as input and as output)."""
        if not isinstance(x, self.Array):
            return content_fingerprint(np.asarray(x)), self._meta_of(x)
        e = self._entry(x)
        if e[2] is _UNREAD:
            e[2] = self._device_fp(x, e[1])
        return e[2], e[1]
