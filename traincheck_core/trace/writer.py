"""Append-only trace writer: encode on emit, write in the background, flush at exit."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import msgspec

from ..events import Event, Footer
from .format import LENGTH, MAGIC

__all__ = ["TraceWriter"]

TAP_EVERY_NS = 100_000_000  # with a tap: stream at the first event 100 ms after the last time
_NEVER = 1 << 63


class TraceWriter:
    """Writes one process's events to ``path``.

    ``emit`` only encodes a frame and queues it (under a microsecond); queued frames go to
    the file when they pass ``buffer_bytes``, every ``interval`` seconds from a daemon
    thread, and at :meth:`close`. Writes are whole frames, so a SIGKILL loses at most the last
    interval and never leaves a frame that decodes wrongly.

    With taps (:meth:`add_tap`), :meth:`stream` hands the queued frames to them at once (at
    every meta update) and to the file only every half ``interval``: a write system call takes
    tens of microseconds on some machines, and the file needs no more than the interval
    promises.
    """

    def __init__(self, path: str | os.PathLike[str], *, buffer_bytes: int = 1 << 20,
                 interval: float = 0.5) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._enc = msgspec.msgpack.Encoder()
        self._head = MAGIC  # written before the first frame
        # Whole frames waiting for the file. ``emit`` appends one frame in one atomic step
        # and takes no lock: neither another thread nor a re-entrant emit (a signal handler)
        # can split it. ``flush`` takes frames from the other end.
        self._frames: deque[bytes] = deque()
        self._queued = 0  # bytes queued (approximate across threads: only times a flush)
        # Re-entrant: a signal handler (SIGTERM -> close) may run while this thread is inside
        # flush; a plain lock would deadlock the process there.
        self._lock = threading.RLock()
        self._limit = buffer_bytes
        self._interval = interval
        self._closed = False
        self._written = 0  # frames taken from the queue (to the taps; in the file or soon)
        self.bytes_written = 0
        self._stop = threading.Event()
        self._flushed = time.monotonic()  # when the file was last written to
        self._unwritten: list[bytes] = []  # streamed to the taps, not yet to the file
        self._unwritten_bytes = 0
        self._thread: threading.Thread | None = None
        self._taps: tuple[Callable[[bytes], None], ...] = ()
        # With a tap, the first event emitted at or after this instant (event clock) streams:
        # what a tap gets (the online checker) waits at most about TAP_EVERY_NS, and it is
        # sent on the emitting thread, not on a timer thread that would take the GIL.
        self._tap_due = _NEVER
        if interval > 0:
            self._start_flusher()

    def _start_flusher(self) -> None:
        self._thread = threading.Thread(target=self._flush_loop, name="traincheck-flush",
                                        daemon=True)
        self._thread.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._interval):
            # Only when nothing else wrote to the file meanwhile (e.g. a session with a tap
            # does at least every half interval): this thread then never competes with
            # training for the GIL.
            if time.monotonic() - self._flushed >= self._interval:
                self.flush()

    def set_interval(self, seconds: float) -> None:
        """Flush every ``seconds`` from now on (takes effect after the current wait)."""
        self._interval = seconds
        if self._thread is None and seconds > 0 and not self._closed:
            self._start_flusher()

    @property
    def count(self) -> int:
        """Events emitted so far (written or queued)."""
        return self._written + len(self._frames)

    def emit(self, event: Event) -> bytes | None:
        """Append one event; cheap, thread-safe, never raises for a closed writer. Returns
        the frame (length and msgpack, as in the file), or ``None`` once closed: the online
        checker's pipe carries the same frames, so an event is encoded once for both."""
        if self._closed:
            return None
        data = self._enc.encode(event)
        frame = LENGTH.pack(len(data)) + data
        self._frames.append(frame)
        self._queued += len(data)
        if self._queued >= self._limit:
            self.flush()
        elif event.t >= self._tap_due:
            self.stream()
        return frame

    def add_tap(self, tap: Callable[[bytes], None]) -> None:
        """Also hand every batch of frames sent from now on to ``tap(data)``: the frames
        exactly as the file gets them, in file order, on whichever thread flushes or
        streams. Frames queued before go to the file first, without it. A tap must be quick
        and must not raise (an exception is dropped: the file comes first)."""
        with self._lock:
            self.flush()
            self._taps = (*self._taps, tap)
            self._tap_due = time.monotonic_ns() + TAP_EVERY_NS

    def flush(self) -> None:
        """Write everything queued so far to the file (and hand it to the taps)."""
        self._send(to_file=True)

    def stream(self) -> None:
        """Hand everything queued so far to the taps; the file gets it too if half an
        interval passed since it was last written to (else within the interval)."""
        self._send(to_file=not self._taps)

    def _send(self, to_file: bool) -> None:
        with self._lock:
            if self._fd < 0:
                return
            if self._taps:
                self._tap_due = time.monotonic_ns() + TAP_EVERY_NS
            batch = self._take()
            self._queued = 0
            self._written += len(batch)
            data = b"".join(batch)
            if data:
                self._unwritten.append(data)
                self._unwritten_bytes += len(data)
            now = time.monotonic()
            if to_file or self._head or self._unwritten_bytes >= self._limit or \
                    now - self._flushed >= self._interval / 2:
                self._flushed = now
                pending, self._unwritten, self._unwritten_bytes = self._unwritten, [], 0
                head, self._head = self._head, b""
                if head or pending:
                    self._write(head + b"".join(pending))
            if data:
                for tap in self._taps:
                    try:
                        tap(data)
                    except Exception:
                        pass

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        self.bytes_written += len(view)
        while view and self._fd >= 0:  # a signal handler may have closed the file
            n = os.write(self._fd, view)
            view = view[n:]

    def _take(self) -> list[bytes]:
        """The queued frames, oldest first (frames emitted meanwhile wait for the next flush)."""
        frames, batch = self._frames, []
        try:
            for _ in range(len(frames)):
                batch.append(frames.popleft())
        except IndexError:  # a signal handler's close, on this thread, took the rest
            pass
        return batch

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
        self._frames = deque()
        self._unwritten, self._unwritten_bytes = [], 0
        self._closed = True
        self._fd = -1
        self._stop = threading.Event()
        self._thread = None
        self._taps = ()
        self._tap_due = _NEVER
