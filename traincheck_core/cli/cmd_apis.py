"""``traincheck apis``: the APIs each plugin instruments with the installed frameworks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any, cast

import msgspec

from ..plugins.manager import make_plugin_manager

NAME = "apis"
HELP = "list the API names each plugin instruments (resolved against the installed frameworks)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--plugin", action="append", default=[], metavar="NAME",
                   help="only this plugin (repeatable); default: every installed plugin")
    p.add_argument("--json", action="store_true", help="print JSON {plugin: [api, ...]}")


def main(args: argparse.Namespace) -> int:
    selected = [x.strip() for p in args.plugin for x in p.split(",") if x.strip()]
    pm, infos = make_plugin_manager(selected or None, autoload=True)
    out: dict[str, list[str]] = {}
    for impl in pm.hook.traincheck_api_catalog.get_hookimpls():
        try:
            # pluggy's hook implementations are untyped: a plugin may return any iterable
            names = cast(Iterable[Any], impl.function() or [])
            out[impl.plugin_name] = sorted(str(n) for n in names)
        except Exception as exc:
            print(f"traincheck: plugin {impl.plugin_name} could not list its APIs: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
    for info in infos:
        if not info.loadable:
            print(f"traincheck: plugin {info.name} skipped: {info.skip_reason}", file=sys.stderr)
    if args.json:
        sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
        return 0
    for name, apis in out.items():
        print(f"# {name} ({len(apis)} APIs)")
        for api in apis:
            print(api)
    return 0
