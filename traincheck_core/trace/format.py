"""The on-disk frame format shared by the writer and the reader.

A trace file is ``MAGIC`` followed by frames; a frame is a 4-byte little-endian length and
that many bytes of msgpack holding one :data:`~traincheck_core.events.Event`. The first frame
is always a :class:`~traincheck_core.events.Header`. Files are append-only, so a process killed
at any moment leaves a prefix in which every complete frame decodes.
"""

from __future__ import annotations

import struct

MAGIC = b"TCTRACE\x01"
LENGTH = struct.Struct("<I")
#: A frame longer than this is taken as corruption, not as a frame still being written.
MAX_FRAME = 64 * 1024 * 1024
SUFFIX = ".tctrace"


def trace_file_name(host: str, pid: int, rank: int | None) -> str:
    """Name of a process's trace file inside a run directory (unique per host and pid)."""
    r = "x" if rank is None else str(rank)
    return f"trace-r{r}-{host}-{pid}{SUFFIX}"
