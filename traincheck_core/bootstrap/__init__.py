"""Start a session in every process of a run.

``traincheck run`` puts :func:`bootstrap_dir` first on ``PYTHONPATH`` and the resolved config in
``TRAINCHECK_SESSION``; the ``sitecustomize`` module there starts a session as the interpreter
starts, so processes started by ``torchrun``, ``multiprocessing`` (spawn) or ``subprocess``
are traced too. Forked processes (DataLoader workers) are handled by the session's fork hook.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["bootstrap_dir", "start_from_env"]


def bootstrap_dir() -> Path:
    """The folder holding traincheck's ``sitecustomize.py``."""
    return Path(__file__).resolve().parent / "site"


def start_from_env() -> None:
    """Start a session from ``TRAINCHECK_*`` configuration; never raises into the program."""
    try:
        from ..config import load_config
        from ..session import start_session

        start_session(load_config())
    except Exception as exc:
        print(f"traincheck: tracing disabled in this process: {type(exc).__name__}: {exc}",
              file=sys.stderr)
