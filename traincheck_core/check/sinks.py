"""Where violations go: one readable line, a JSON Lines file, the plugin hook."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import msgspec

from ..invariants import Violation

__all__ = ["violation_line", "ViolationLog", "read_violations"]

_ENC = msgspec.json.Encoder()


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else _ENC.encode(value).decode() \
        if _encodable(value) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _encodable(value: Any) -> bool:
    try:
        _ENC.encode(value)
        return True
    except (TypeError, msgspec.EncodeError):
        return False


def violation_line(v: Violation) -> str:
    """``VIOLATION step 3 rank 0 [id]: message; expected …; observed …; at file:line; hint: …``"""
    where = []
    if v.step is not None:
        where.append(f"step {v.step}")
    if v.rank is not None:
        where.append(f"rank {v.rank}")
    head = "VIOLATION" + (f" at {' '.join(where)}" if where else "")
    parts = [f"{head} [{v.invariant}]: {v.message}"]
    if v.expected is not None:
        parts.append(f"expected {_short(v.expected)}")
    if v.observed is not None:
        parts.append(f"observed {_short(v.observed)}")
    if v.loc:
        parts.append(f"at {v.loc}")
    if v.hint:
        parts.append(f"hint: {v.hint}")
    return "; ".join(parts).replace("\n", " ")


class ViolationLog:
    """Appends violations to ``violations.jsonl``, one object per line, one ``write`` each.

    The file is opened with ``O_APPEND`` so the processes of a run can share it: a single
    small write per line is not interleaved with another process's line.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.RLock()  # re-entrant: a signal handler may close it mid-write

    def write(self, v: Violation) -> None:
        try:
            line = _ENC.encode(v)
        except (TypeError, msgspec.EncodeError):  # evidence a checker could not keep as JSON
            line = _ENC.encode(msgspec.structs.replace(v, evidence=[], expected=repr(v.expected),
                                                       observed=repr(v.observed)))
        with self._lock:
            if self._fd >= 0:
                os.write(self._fd, line + b"\n")

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


_DEC = msgspec.json.Decoder(Violation)


def read_violations(path: str | os.PathLike[str]) -> list[Violation]:
    """Violations from a ``violations.jsonl``; a line cut short by a killed process is skipped."""
    out: list[Violation] = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            out.append(_DEC.decode(line))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return out
