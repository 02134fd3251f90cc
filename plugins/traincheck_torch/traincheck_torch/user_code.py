"""The user's own functions and methods, traced when asked (``--torch-instrument MODULE``).

When a named module is imported (or at once, if it already is), every public function defined
in it and every public method of the classes defined in it is wrapped with the adapter's
ordinary call wrapper, under the name ``module.function`` or ``module.Class.method``. A named
package covers its submodules too: each one is watched for import as its parent is imported.

Left out on purpose: names starting with ``_``; ``forward`` of ``torch.nn.Module`` subclasses and
``step`` of optimizer subclasses (torch's own hooks trace those); anything imported into the
module from elsewhere. Functions defined in the script run as ``__main__`` cannot be wrapped
this way (they do not exist before the script runs): put them in a module.
"""

from __future__ import annotations

import inspect
import logging
import pkgutil
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

import wrapt

from .catalog import ApiSpec

__all__ = ["UserCodeInstrumentor", "valid_module_name"]

log = logging.getLogger("traincheck")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def valid_module_name(name: str) -> bool:
    return bool(_NAME.match(name))


class UserCodeInstrumentor:
    """Wraps user modules as they are imported. ``wrap(owner, attr, raw, spec)`` does the
    patching (the instrumentor's reversible patcher and call wrapper)."""

    def __init__(self, wrap: Callable[[Any, str, Any, ApiSpec], None]) -> None:
        self._wrap = wrap
        self._done: set[str] = set()
        self._watched: set[str] = set()
        self.active = False

    def watch(self, names: Iterable[str]) -> None:
        self.active = True
        for name in names:
            self._watch(name)

    def stop(self) -> None:
        """Later imports are left alone (patches already made are undone by the patcher)."""
        self.active = False
        self._done.clear()

    def _watch(self, name: str) -> None:
        if name in sys.modules:
            self._on_import(sys.modules[name])
        elif name not in self._watched:
            self._watched.add(name)
            wrapt.when_imported(name)(self._on_import)

    def _on_import(self, module: Any) -> None:
        name = getattr(module, "__name__", "")
        if not self.active or name in self._done:
            return
        self._done.add(name)
        try:
            for owner, attr, raw, api in _targets(module):
                self._wrap(owner, attr, raw, ApiSpec(api, name, None, attr))
            for sub in pkgutil.iter_modules(getattr(module, "__path__", None) or []):
                self._watch(f"{name}.{sub.name}")
        except Exception as exc:  # fail open: the module runs untraced
            log.warning("traincheck-torch could not instrument module %s: %s: %s", name,
                        type(exc).__name__, exc)


def _targets(module: Any) -> list[tuple[Any, str, Any, str]]:
    """``(owner, attribute, original, api name)`` of everything to wrap in ``module``."""
    name = module.__name__
    out: list[tuple[Any, str, Any, str]] = []
    for attr, obj in list(vars(module).items()):
        home = getattr(obj, "__module__", None)
        # Also what a package re-exports from its submodules (``from .train import fit``):
        # that reference was bound before the submodule's own one could be wrapped.
        if attr.startswith("_") or not isinstance(home, str) or not (
                home == name or home.startswith(name + ".")):
            continue
        if inspect.isfunction(obj):
            out.append((module, attr, obj, f"{home}.{obj.__qualname__}"))
        elif inspect.isclass(obj):
            out += [(obj, m, raw, f"{home}.{obj.__qualname__}.{m}")
                    for m, raw in vars(obj).items() if _wants_method(obj, m, raw)]
    return out


def _wants_method(cls: type, attr: str, raw: Any) -> bool:
    import torch

    if attr.startswith("_") or not inspect.isfunction(raw):
        return False
    if attr == "forward" and issubclass(cls, torch.nn.Module):
        return False  # traced by the global module hooks
    return not (attr == "step" and issubclass(cls, torch.optim.Optimizer))
