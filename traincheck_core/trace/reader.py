"""Read traces: one file, or a whole run directory merged in time order, optionally following
files that are still being written."""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ..errors import TraceCorruptError, UsageError
from ..events import Event, Footer, Header
from .format import LENGTH, MAGIC, MAX_FRAME, SUFFIX

__all__ = ["TraceFile", "Record", "iter_run", "trace_files", "read_header"]

_DECODER = msgspec.msgpack.Decoder(Event)


@dataclass(frozen=True)
class Record:
    """One event with the trace file (process) it came from."""

    source: int  # index of the file in the run, stable for one reading
    event: Event


@dataclass
class TraceFile:
    """Incremental reader of one trace file.

    :meth:`read_available` returns the complete frames that have appeared since the last call,
    so the same object serves a finished file and one that is still growing. A frame cut short
    at the end of the file is left for the next call (``partial_tail`` tells its size); a frame
    that cannot be decoded raises :class:`TraceCorruptError` with the file and byte offset.
    """

    path: Path
    offset: int = 0
    header: Header | None = None
    finished: bool = False  # a Footer was read
    partial_tail: int = 0
    _pending: bytes = field(default=b"", repr=False)

    def read_available(self) -> list[Event]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset + len(self._pending))
                data = self._pending + fh.read()
        except OSError as exc:
            raise TraceCorruptError(str(self.path), self.offset, f"cannot read: {exc}") from exc
        events, used = self._decode(data)
        self.offset += used
        self._pending = data[used:]
        self.partial_tail = len(self._pending)
        return events

    def _decode(self, data: bytes) -> tuple[list[Event], int]:
        pos = 0
        if self.offset == 0:
            if len(data) < len(MAGIC):
                if MAGIC.startswith(data):
                    return [], 0
                raise TraceCorruptError(str(self.path), 0, "not a traincheck trace (bad magic)")
            if data[: len(MAGIC)] != MAGIC:
                raise TraceCorruptError(str(self.path), 0, "not a traincheck trace (bad magic)")
            pos = len(MAGIC)
        events: list[Event] = []
        n = len(data)
        while pos + 4 <= n:
            (size,) = LENGTH.unpack_from(data, pos)
            at = self.offset + pos
            if size == 0 or size > MAX_FRAME:
                raise TraceCorruptError(str(self.path), at, f"impossible frame length {size}")
            if pos + 4 + size > n:
                break
            try:
                ev = _DECODER.decode(data[pos + 4 : pos + 4 + size])
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise TraceCorruptError(str(self.path), at, f"undecodable frame: {exc}") from None
            self._accept(ev, at)
            events.append(ev)
            pos += 4 + size
        return events, pos

    def _accept(self, ev: Event, at: int) -> None:
        if self.header is None:
            if not isinstance(ev, Header):
                raise TraceCorruptError(str(self.path), at, "first frame is not a header")
            self.header = ev
        elif self.finished:
            raise TraceCorruptError(str(self.path), at, "data after the end-of-trace record")
        if isinstance(ev, Footer):
            self.finished = True

    def read_all(self) -> list[Event]:
        """Every complete event in the file now (a cut-short tail is left, see ``partial_tail``)."""
        return self.read_available()


def read_header(path: str | os.PathLike[str]) -> Header:
    """The header of one trace file, reading no further than needed."""
    tf = TraceFile(Path(path))
    with open(tf.path, "rb") as fh:
        data = fh.read(1 << 16)
    events, _ = tf._decode(data)
    if not events:
        raise TraceCorruptError(str(path), 0, "no complete header frame")
    return events[0]  # type: ignore[return-value]


def trace_files(path: str | os.PathLike[str]) -> list[Path]:
    """The trace files named by ``path``: the file itself, or every trace in a run directory."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(p.glob(f"*{SUFFIX}"))
    raise UsageError(f"{p}: no such trace file or directory")


def iter_run(paths: str | os.PathLike[str] | list, *, follow: bool = False,
             poll: float = 0.2, idle_timeout: float | None = None) -> Iterator[Record]:
    """Iterate the events of trace files or run directories, merged by monotonic time.

    Events of one file keep their file order. With ``follow=True`` the reader keeps polling
    for new frames and new files until every file has its end-of-trace record, or nothing new
    arrived for ``idle_timeout`` seconds (``None``: wait forever).
    """
    roots = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files: dict[Path, TraceFile] = {}
    order: list[TraceFile] = []

    def discover() -> None:
        for root in roots:
            if follow and not Path(root).exists():
                continue  # the writer has not created it yet
            for f in trace_files(root):
                if f not in files:
                    files[f] = TraceFile(f)
                    order.append(files[f])

    discover()
    if not follow:
        streams = [_tagged(i, tf.read_all()) for i, tf in enumerate(order)]
        yield from heapq.merge(*streams, key=_key)
        return
    yield from _follow(order, discover, poll, idle_timeout)


def _key(rec: Record) -> int:
    return rec.event.t


def _tagged(source: int, events: list[Event]) -> Iterator[Record]:
    for ev in events:
        yield Record(source, ev)


def _follow(order: list[TraceFile], discover, poll: float, idle_timeout: float | None
            ) -> Iterator[Record]:
    # Following merges what each poll brought, in time order within that batch: events that
    # arrive late from a slow writer are delivered in a later batch rather than waited for.
    last_new = time.monotonic()
    while True:
        discover()
        batch = [_tagged(i, tf.read_available()) for i, tf in enumerate(order)]
        merged = list(heapq.merge(*batch, key=_key))
        if merged:
            last_new = time.monotonic()
            yield from merged
        if order and all(tf.finished for tf in order):
            return
        if idle_timeout is not None and time.monotonic() - last_new > idle_timeout:
            return
        time.sleep(poll)
