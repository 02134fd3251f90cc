"""Install and remove every JAX/Optax/Flax probe; idempotent and reversible.

The probes are installed by post-import hooks (``wrapt.register_post_import_hook``), so
importing this module never imports JAX, and a program that imports ``jax`` after the session
started (the normal case under ``traincheck run``) is instrumented right after the import.
"""

from __future__ import annotations

import threading
from typing import Any

import wrapt

from traincheck_core import Session

from .adapter import JaxAdapter
from .patching import Patches

__all__ = ["Instrumentor", "INSTRUMENTOR"]

# (module that triggers the hook, installer method name)
TARGETS = (("jax", "_on_jax"), ("optax", "_on_optax"), ("flax.linen", "_on_linen"),
           ("flax.training.train_state", "_on_train_state"), ("flax.nnx", "_on_nnx"))


class Instrumentor:
    """One per process. ``instrument`` twice changes nothing; ``uninstrument`` restores every
    patched attribute."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.adapter: JaxAdapter | None = None
        self.patches = Patches()
        self.done: set[str] = set()
        self._hooks_registered = False
        self._lock = threading.RLock()

    @property
    def active(self) -> bool:
        return self.session is not None

    def instrument(self, session: Session) -> None:
        with self._lock:
            if self.session is not None:
                return
            self.session = session
            if not self._hooks_registered:  # wrapt cannot unregister: hooks check `active`
                self._hooks_registered = True
                for module, method in TARGETS:
                    wrapt.register_post_import_hook(self._hook(method), module)
            else:
                import sys

                for module, method in TARGETS:
                    if module in sys.modules:
                        self._hook(method)(sys.modules[module])

    def flush(self) -> None:
        """Emit the deferred tail of the last jitted call (the session is ending)."""
        adapter = self.adapter
        if adapter is not None:
            adapter.flush()

    def uninstrument(self) -> None:
        with self._lock:
            if self.adapter is not None:
                self.adapter.flush()
                self.adapter.active = False
            self.patches.restore()
            self.done.clear()
            self.session = None
            self.adapter = None

    def _hook(self, method: str) -> Any:
        def hook(module: Any) -> None:
            with self._lock:
                session = self.session
                if session is None or method in self.done:
                    return
                try:
                    with session.suppressed():
                        getattr(self, method)(module)
                    self.done.add(method)
                except Exception as exc:  # fail open: that part of the program is untraced
                    session.probe_failed(method.lstrip("_"), exc)

        return hook

    def _ensure_adapter(self) -> JaxAdapter:
        if self.adapter is None:
            import jax

            assert self.session is not None
            self.adapter = JaxAdapter(self.session, jax)
            kit = self.adapter.kit
            # Arrays inside containers (pytree arguments such as `updates`, `grads`) are
            # summarized without a fingerprint: hashing every leaf of every nested Optax
            # update would dominate eager training. PRNG keys keep theirs; tracked variables
            # are fingerprinted as variables; top-level array arguments as arguments.
            self.session.summaries.register(type(jax.numpy.zeros(())), kit.summarize_nested)
            self.session.summaries.register(kit.Tracer, kit.summarize_nested)
            self.session.set_meta(step=0)
        return self.adapter

    # -- installers --------------------------------------------------------------------------
    def _on_jax(self, jax: Any) -> None:
        from .jax_apis import install_jax
        from .jit import JitProbe

        ad = self._ensure_adapter()
        self.patches.set(jax, "jit", JitProbe(ad, jax.jit).make_jit())
        if hasattr(jax, "pmap"):
            self.patches.set(jax, "pmap", JitProbe(ad, jax.pmap, "pmap").make_jit())
        install_jax(ad, jax, self.patches)

    def _on_optax(self, optax: Any) -> None:
        from .optax_apis import install_optax

        install_optax(self._ensure_adapter(), optax, self.patches)

    def _on_linen(self, linen: Any) -> None:
        from .flax_apis import install_linen

        install_linen(self._ensure_adapter(), linen, self.patches)

    def _on_train_state(self, train_state: Any) -> None:
        from .flax_apis import install_train_state

        install_train_state(self._ensure_adapter(), train_state, self.patches)

    def _on_nnx(self, nnx: Any) -> None:
        from .flax_apis import install_nnx

        install_nnx(self._ensure_adapter(), nnx, self.patches)


INSTRUMENTOR = Instrumentor()
