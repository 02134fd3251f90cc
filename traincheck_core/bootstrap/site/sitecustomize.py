"""traincheck's launcher bootstrap: start tracing, then chain to any other sitecustomize."""

import os
import sys


def _start() -> None:
    if os.environ.get("TRAINCHECK_SESSION"):
        from traincheck_core.bootstrap import start_from_env

        start_from_env()


def _chain() -> None:
    # Another sitecustomize further down sys.path would have been shadowed by this one.
    here = os.path.dirname(os.path.abspath(__file__))
    saved = sys.path[:]
    me = sys.modules.pop("sitecustomize", None)
    try:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
        import importlib

        importlib.import_module("sitecustomize")
    except ImportError:
        pass
    finally:
        sys.path[:] = saved
        if me is not None:
            sys.modules["sitecustomize"] = me


_start()
_chain()
