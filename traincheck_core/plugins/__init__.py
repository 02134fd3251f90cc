"""The plugin host: hook specification and plugin discovery/loading."""

from .hookspecs import hookimpl, hookspec
from .manager import (
    ENTRY_POINT_GROUP,
    PluginInfo,
    autoload_disabled,
    check_requirements,
    discover_plugins,
    load_plugin,
    make_plugin_manager,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "autoload_disabled",
    "check_requirements",
    "discover_plugins",
    "hookimpl",
    "hookspec",
    "load_plugin",
    "make_plugin_manager",
]
