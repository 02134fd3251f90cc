"""What the training process and its checker process say to each other.

Training -> checker: the process's events, framed exactly as in a trace file (a 4-byte
length, then the msgpack event), on the checker's stdin. Checker -> training: :data:`Message`
frames on the checker's stdout. Closing stdin means "the run is over": the checker finishes
its open windows, answers :class:`Finished` and exits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import msgspec

from ..invariants import Violation
from ..trace.format import LENGTH
from .result import CheckResult

__all__ = ["WorkerSpec", "Ready", "Reported", "Finished", "Failed", "Message", "FrameReader",
           "frame", "MESSAGES"]


class WorkerSpec(msgspec.Struct, kw_only=True):
    """How to start checking: passed as JSON on the checker's command line."""

    invariants: list[str]  # invariant files
    plugins: list[str]  # plugins whose relation templates to load, as the user named them
    autoload: bool  # with no plugins named: load every installed one
    skip_cross_process: bool  # the launcher checks cross-process invariants itself
    source: str  # how violations name this process (host:pid)


class Ready(msgspec.Struct, tag="ready"):
    """Invariants and relations are loaded: verdicts follow events from now on."""


class Reported(msgspec.Struct, tag="v"):
    """A violation: the first of its invariant on this rank (``first``) or a repeat."""

    violation: Violation
    first: bool


class Finished(msgspec.Struct, tag="done"):
    """The run's end: violations only decidable at the end, then the whole result."""

    pending: list[Violation]
    result: CheckResult


class Failed(msgspec.Struct, tag="failed"):
    """Checking is off: the invariants or relations could not be loaded, or a checker broke."""

    error: str


Message = Ready | Reported | Finished | Failed
MESSAGES = msgspec.msgpack.Decoder(Message)


def frame(data: bytes) -> bytes:
    return LENGTH.pack(len(data)) + data


class FrameReader:
    """Cuts a byte stream read from a pipe into frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        buf = self._buf
        buf += chunk
        pos, end = 0, len(buf)
        while end - pos >= LENGTH.size:
            (size,) = LENGTH.unpack_from(buf, pos)
            start = pos + LENGTH.size
            if end - start < size:
                break
            yield bytes(buf[start:start + size])
            pos = start + size
        del buf[:pos]


def read_chunks(fd: int, size: int = 1 << 20) -> Iterator[bytes]:
    """Everything readable from ``fd`` until end of file."""
    while True:
        chunk = os.read(fd, size)
        if not chunk:
            return
        yield chunk
