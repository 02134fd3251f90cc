"""Discover, check and load plugins from the ``traincheck.plugins`` entry-point group."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy
from packaging.requirements import InvalidRequirement, Requirement

from ..errors import PluginError
from . import hookspecs

__all__ = ["ENTRY_POINT_GROUP", "PluginInfo", "discover_plugins", "make_plugin_manager",
           "check_requirements", "autoload_disabled"]

ENTRY_POINT_GROUP = "traincheck.plugins"
AUTOLOAD_ENV = "TRAINCHECK_DISABLE_PLUGIN_AUTOLOAD"


@dataclass
class PluginInfo:
    """What is known about one installed plugin, before and after loading it."""

    name: str
    target: str  # "module" or "module:attr"
    distribution: str | None = None
    version: str | None = None
    requires: tuple[str, ...] = ()
    frameworks: dict[str, str] = field(default_factory=dict)
    skip_reason: str | None = None
    obj: Any = None

    @property
    def loadable(self) -> bool:
        return self.skip_reason is None


def autoload_disabled() -> bool:
    """True when ``TRAINCHECK_DISABLE_PLUGIN_AUTOLOAD`` is set to a true value."""
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def discover_plugins() -> dict[str, PluginInfo]:
    """Installed plugins by name, not yet imported."""
    found: dict[str, PluginInfo] = {}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found.setdefault(ep.name, PluginInfo(
            name=ep.name, target=ep.value,
            distribution=dist.name if dist else None,
            version=dist.version if dist else None))
    return found


def check_requirements(requires: tuple[str, ...]) -> tuple[str | None, dict[str, str]]:
    """``(reason to skip or None, {distribution: installed version})`` for requirement strings.

    A string may list alternatives separated by ``|``, e.g. ``"tensorflow>=2 | tensorflow-cpu>=2"``:
    the first one satisfied counts.
    """
    versions: dict[str, str] = {}
    for text in requires:
        reasons = []
        for alt in (a.strip() for a in text.split("|")):
            reason, version = _check_one(alt)
            if reason is None:
                versions.update(version)
                break
            reasons.append(reason)
        else:
            return " or ".join(reasons), versions
    return None, versions


def _check_one(text: str) -> tuple[str | None, dict[str, str]]:
    try:
        req = Requirement(text)
    except InvalidRequirement:
        return f"declares an invalid requirement {text!r}", {}
    try:
        have = md.version(req.name)
    except md.PackageNotFoundError:
        return f"needs {text}, which is not installed", {}
    if req.specifier and not req.specifier.contains(have, prereleases=True):
        return f"needs {text}, found {req.name} {have}", {}
    return None, {req.name: have}


def _import_target(target: str) -> Any:
    mod_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(mod_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def load_plugin(info: PluginInfo) -> PluginInfo:
    """Import the plugin's module and check its declared requirements (never raises)."""
    try:
        obj = _import_target(info.target)
    except Exception as exc:  # a broken plugin must not break the user's program
        info.skip_reason = f"failed to import {info.target}: {type(exc).__name__}: {exc}"
        return info
    info.requires = tuple(getattr(obj, "TRAINCHECK_REQUIRES", ()))
    reason, versions = check_requirements(info.requires)
    info.frameworks = versions
    info.skip_reason = reason
    info.obj = obj
    return info


def _resolve(names: list[str], installed: dict[str, PluginInfo]) -> list[PluginInfo]:
    out = []
    for name in names:
        if name in installed:
            out.append(installed[name])
        elif "." in name or ":" in name:  # a module path: a plugin that is not installed
            out.append(PluginInfo(name=name, target=name))
        else:
            known = ", ".join(sorted(installed)) or "none installed"
            raise PluginError(
                f"unknown plugin {name!r} (installed plugins: {known}); install its "
                f"distribution, or name an importable module such as 'mypkg.tc_plugin'")
    return out


def make_plugin_manager(selected: list[str] | None, *, autoload: bool | None = None,
                        extra: Sequence[Any] = ()) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """A plugin manager with the selected plugins registered.

    ``selected`` names plugins explicitly (entry-point names or module paths); when it is empty
    every installed plugin is loaded unless autoloading is disabled. Plugins whose requirements
    are not met are returned with a ``skip_reason`` and not registered. ``extra`` objects
    (already imported plugins, e.g. from tests) are registered as they are.
    """
    pm = pluggy.PluginManager("traincheck")
    pm.add_hookspecs(hookspecs)
    installed = discover_plugins()
    if autoload is None:
        autoload = not autoload_disabled()
    if selected:
        infos = _resolve(selected, installed)
    elif autoload:
        infos = list(installed.values())
    else:
        infos = []
    for info in infos:
        load_plugin(info)
        if info.loadable and pm.get_plugin(info.name) is None:
            pm.register(info.obj, name=info.name)
    for obj in extra:
        pm.register(obj)
    return pm, infos
