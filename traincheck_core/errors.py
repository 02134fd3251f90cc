"""Errors traincheck raises on bad input. Each message says what, where and what to do."""

from __future__ import annotations

__all__ = [
    "TraincheckError",
    "UsageError",
    "TraceCorruptError",
    "InvariantFileError",
    "PluginError",
    "ViolationError",
]


class TraincheckError(Exception):
    """Base of every error traincheck raises on purpose; the CLI exits 2 on it."""


class UsageError(TraincheckError):
    """The command line, a config file or an environment variable asked for something invalid."""


class TraceCorruptError(TraincheckError):
    """A trace file could not be decoded at ``offset`` (bytes from the start of ``path``)."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path = str(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"{self.path}: corrupt trace at byte {offset}: {reason}")


class InvariantFileError(TraincheckError):
    """An invariants file is malformed or from an incompatible schema version."""


class PluginError(TraincheckError):
    """A plugin named on the command line does not exist or failed to load."""


class ViolationError(RuntimeError):
    """Raised into the training loop by ``--on-violation raise`` when an invariant is violated."""
