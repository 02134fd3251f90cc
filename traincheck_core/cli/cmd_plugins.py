"""``traincheck plugins``: installed plugins, their versions and whether they would load."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from ..plugins.manager import autoload_disabled, discover_plugins, load_plugin

NAME = "plugins"
HELP = "list installed plugins, the framework versions they found, and whether they would load"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def main(args: argparse.Namespace) -> int:
    infos = [load_plugin(i) for i in discover_plugins().values()]
    rows: list[dict[str, Any]] = [
        {"name": i.name, "distribution": i.distribution, "version": i.version,
         "requires": list(i.requires), "frameworks": i.frameworks,
         "loads": i.loadable, "reason": i.skip_reason} for i in infos]
    if args.json:
        sys.stdout.write(msgspec.json.encode({"autoload": not autoload_disabled(),
                                              "plugins": rows}).decode() + "\n")
        return 0
    if not rows:
        print("no traincheck plugins installed (pip install ./plugins/traincheck_torch)")
        return 0
    for r in rows:
        fw = ", ".join(f"{k} {v}" for k, v in r["frameworks"].items()) or "-"
        status = "loads" if r["loads"] else f"skipped: {r['reason']}"
        print(f"{r['name']:12s} {r['distribution'] or '?'} {r['version'] or '?'}  "
              f"[{fw}]  {status}")
    if autoload_disabled():
        print("autoload is off (TRAINCHECK_DISABLE_PLUGIN_AUTOLOAD): only --plugin loads plugins")
    return 0
