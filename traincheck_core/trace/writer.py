"""Append-only trace writer: encode on emit, write in the background, flush at exit."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import msgspec

from ..events import Event, Footer
from .format import LENGTH, MAGIC

__all__ = ["TraceWriter"]


class TraceWriter:
    """Writes one process's events to ``path``.

    ``emit`` only encodes into an in-memory buffer (about a microsecond); the buffer goes to
    the file when it grows past ``buffer_bytes``, every ``interval`` seconds from a daemon
    thread, and at :meth:`close`. Writes are whole frames, so a SIGKILL loses at most the last
    interval and never leaves a frame that decodes wrongly.
    """

    def __init__(self, path: str | os.PathLike[str], *, buffer_bytes: int = 1 << 20,
                 interval: float = 0.5) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._enc = msgspec.msgpack.Encoder()
        self._buf = bytearray(MAGIC)
        # Re-entrant: a signal handler (SIGTERM -> close) may run while this thread is inside
        # emit/flush; a plain lock would deadlock the process there.
        self._lock = threading.RLock()
        self._limit = buffer_bytes
        self._interval = interval
        self._closed = False
        self.count = 0
        self.bytes_written = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if interval > 0:
            self._start_flusher()

    def _start_flusher(self) -> None:
        self._thread = threading.Thread(target=self._flush_loop, name="traincheck-flush",
                                        daemon=True)
        self._thread.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def emit(self, event: Event) -> None:
        """Append one event; cheap, thread-safe, never raises for a closed writer."""
        data = self._enc.encode(event)
        with self._lock:
            if self._closed:
                return
            # one in-place append per frame, so a re-entrant emit never splits a frame
            self._buf += LENGTH.pack(len(data)) + data
            self.count += 1
            full = len(self._buf) >= self._limit
        if full:
            self.flush()

    def flush(self) -> None:
        """Write everything buffered so far to the file."""
        with self._lock:
            if not self._buf or self._fd < 0:
                return
            pending, self._buf = self._buf, bytearray()
            view = memoryview(pending)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self.bytes_written += len(pending)

    def close(self, reason: str = "exit", t: int = 0) -> None:
        """Write a :class:`Footer`, flush, and close the file. Idempotent."""
        if self._closed:
            return
        self.emit(Footer(t=t, events=self.count, reason=reason))
        with self._lock:
            self._closed = True
        self._stop.set()
        self.flush()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def abandon_after_fork(self) -> None:
        """In a forked child: drop the parent's buffer and file without touching them."""
        self._lock = threading.RLock()
        self._buf = bytearray()
        self._closed = True
        self._fd = -1
        self._stop = threading.Event()
        self._thread = None
