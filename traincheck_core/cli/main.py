"""The ``traincheck`` command: one entry point, one module per subcommand.

Exit codes: 0 clean, 1 violations found, 2 usage or input error. ``TraincheckError`` raised by
a subcommand becomes a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import TraincheckError

# Subcommand modules, each with ``NAME``, ``HELP``, ``add_arguments(parser)`` and
# ``main(args) -> int``. Import errors of optional ones are reported when they are used.
SUBCOMMANDS = ("run", "plugins", "inspect", "infer", "check", "report", "apis")


def _load(name: str):
    try:
        return importlib.import_module(f".cmd_{name}", __package__)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith(f"cmd_{name}"):
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="traincheck",
        description="Catch silent errors in deep-learning training: trace healthy runs, infer "
                    "training invariants, check new runs against them while they train.",
        epilog="Exit status: 0 clean, 1 violations found, 2 usage or input error. "
               "Configuration also comes from TRAINCHECK_* variables and traincheck.toml.")
    parser.add_argument("--version", action="version", version=f"traincheck {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        mod = _load(name)
        if mod is None:
            continue
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._main(args) or 0)
    except TraincheckError as exc:
        print(f"traincheck: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
