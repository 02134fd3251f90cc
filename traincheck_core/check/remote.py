"""Online checking in a separate checker process, off the training thread.

The training thread does nothing per event for it: the checker process reads the trace's own
frames, handed over by the trace writer whenever it writes (a tap: at every meta update, a new
step or stage, at the first event 50 ms after the last write, and when its buffer fills), so
the checker sees a step's events while the next step runs. Writes to its pipe never block:
what the pipe cannot take now waits in a buffer. The checker process
(:mod:`~traincheck_core.check.worker`) runs the same :class:`CheckEngine` on another core
and sends violations back; a thread here reports them (stderr line, ``violations.jsonl``,
``traincheck_violation`` hook) a few milliseconds after the step that shows them.

``raise`` raises :class:`~traincheck_core.ViolationError` from the next traced call on the
training thread, ``stop`` ends the process from the reporting thread: both land a little
after the call that shows the violation, which is why ``checker = "auto"`` keeps those modes
on the training thread (:class:`~traincheck_core.check.online.OnlineChecker`).
"""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import msgspec

from ..config import SESSION_ENV, parse_cpus
from ..errors import UsageError, ViolationError
from ..events import Event
from ..invariants import Violation
from ..trace.format import LENGTH
from .channel import (
    MESSAGES,
    Failed,
    Finished,
    FrameReader,
    Ready,
    Reported,
    WorkerSpec,
    read_chunks,
)
from .online import Reporter, introduction, source_name
from .result import CheckResult
from .sinks import violation_line

if TYPE_CHECKING:  # pragma: no cover
    from ..session import Session

__all__ = ["ProcessChecker"]

SEND_EVERY = 0.05  # seconds between retries of what the pipe could not take at once
BACKLOG_LIMIT = 1 << 28  # bytes the checker may fall behind before checking is switched off
READY_TIMEOUT = 60.0  # seconds training waits, once, for the checker to load the invariants
FINISH_TIMEOUT = 600.0  # seconds the end of the run waits for the checker's last verdicts
NICENESS = 10  # the checker's scheduling priority below the training process's
_F_SETPIPE_SZ = 1031  # Linux: a bigger pipe absorbs a step's events in one write


class ProcessChecker(Reporter):
    """A session sink that hands events to a checker process. Fails open."""

    def __init__(self, session: Session, *, skip_cross_process: bool) -> None:
        super().__init__(session)
        spec = WorkerSpec(invariants=list(session.config.invariants),
                          plugins=list(session.config.plugins),
                          autoload=session.config.autoload,
                          skip_cross_process=skip_cross_process, source=source_name())
        self._proc = _spawn(spec)
        if session.config.checker_cpus:
            _pin(self._proc.pid, session.config.checker_cpus, session)
        self._fd = self._proc.stdin.fileno()  # type: ignore[union-attr]
        os.set_blocking(self._fd, False)
        try:
            fcntl.fcntl(self._fd, _F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass  # not Linux, or over the system's limit: the default pipe works too
        self._enc = msgspec.msgpack.Encoder()
        self._buf = bytearray()
        self._sent_all = False  # the pipe is closed: the checker has all it will get
        self._lock = threading.RLock()
        self._raise: Violation | None = None
        self._done = threading.Event()
        self._ready = threading.Event()
        self._finished: Finished | None = None
        # A forked child (a DataLoader worker) must not hold our pipe open: the checker sees
        # the end of the run only when every copy of the write end is closed.
        os.register_at_fork(after_in_child=self._forget_after_fork)
        for event in introduction(session):
            self._queue(event)
        # From here on the checker gets the trace's frames as they are written; in ``raise``
        # mode each event also looks for a violation to raise on the training thread.
        session.add_tap(self._tap)
        if self.mode == "raise":
            session.add_sink(self._check_raise, frames=True)
        self._reader = _thread(self._read_replies, "traincheck-check-replies")
        self._stop_timer = threading.Event()
        self._leftover = threading.Event()  # the pipe did not take all of the buffer
        _thread(self._send_loop, "traincheck-check-send")
        # Wait (once, like loading invariants inline) until the checker is ready, so even the
        # first steps' violations are reported at once rather than after its start-up.
        if not self._ready.wait(READY_TIMEOUT):
            session.log_once("online:ready", f"the checker process was not ready after "
                             f"{READY_TIMEOUT:.0f} s; training starts, checks follow when it is")

    # -- the hot path ------------------------------------------------------------------------
    def _tap(self, data: bytes) -> None:
        """Frames the trace writer just wrote (whole frames, in trace order): send them on."""
        if self.off or self._sent_all:  # (after the end: the trace's footer, file only)
            return
        with self._lock:
            self._buf += data
            self._send()

    def _check_raise(self, event: Event, frame: bytes | None) -> None:
        if self._raise is not None:
            self._raise_now()

    def _queue(self, event: Event) -> None:
        """An event the trace writer did not write now (the introduction): encode and queue."""
        data = self._enc.encode(event)
        with self._lock:
            self._buf += LENGTH.pack(len(data)) + data

    def _send(self, *, until: float | None = None) -> None:
        """Write what the pipe takes now; with ``until`` (a monotonic deadline), wait for the
        checker to take all of it."""
        with self._lock:
            if self.off or not self._buf:
                self._leftover.clear()
                return
            try:
                sent = self._write_some(until)
            except OSError as exc:
                time.sleep(0.05)  # let it be reaped, for its exit status
                self._turn_off(f"the checker process {self._proc.pid} stopped reading "
                               f"({exc}; exit status {self._proc.poll()})")
                return
            del self._buf[:sent]
            if self._buf:
                self._leftover.set()
            else:
                self._leftover.clear()
            if len(self._buf) > BACKLOG_LIMIT:
                self._turn_off(f"the checker process fell {len(self._buf) >> 20} MB behind "
                               "the training")

    def _write_some(self, until: float | None) -> int:
        with memoryview(self._buf) as view:
            sent = 0
            while sent < len(view):
                try:
                    sent += os.write(self._fd, view[sent:])
                except BlockingIOError:
                    left = 0.0 if until is None else until - time.monotonic()
                    if left <= 0 or not select.select([], [self._fd], [], left)[1]:
                        break
            return sent

    def _forget_after_fork(self) -> None:
        self.off = True
        for f in (self._proc.stdin, self._proc.stdout):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass

    def _send_loop(self) -> None:
        # Retries what the pipe could not take at once. It sleeps until there is some: a
        # thread waking on a timer would take the GIL from training every time.
        while True:
            self._leftover.wait()
            if self._stop_timer.wait(SEND_EVERY):
                return
            self._send()

    def _raise_now(self) -> None:
        v, self._raise = self._raise, None
        raise ViolationError(f"traincheck: {violation_line(v)}")  # type: ignore[arg-type]

    # -- replies -----------------------------------------------------------------------------
    def _read_replies(self) -> None:
        frames = FrameReader()
        try:
            for chunk in read_chunks(self._proc.stdout.fileno()):  # type: ignore[union-attr]
                for data in frames.feed(chunk):
                    self._on_message(MESSAGES.decode(data))
        except Exception as exc:
            self.session.log_once("online:replies", f"lost the checker process's replies: {exc}")
        finally:
            self._ready.set()
            self._done.set()

    def _on_message(self, msg: Ready | Reported | Finished | Failed) -> None:
        if isinstance(msg, Ready):
            self._ready.set()
        elif isinstance(msg, Reported):
            if not msg.first:
                self._log(msg.violation)
            elif self.mode == "raise":
                with self.session.suppressed():
                    self._publish(msg.violation)
                self._raise = msg.violation
            else:
                self.report(msg.violation)
        elif isinstance(msg, Finished):
            self._finished = msg
        else:
            self.session.log_once(f"online:worker:{msg.error}", f"online checking: {msg.error}")

    def _turn_off(self, why: str) -> None:
        self.off = True
        step = self.session.meta.get("step")
        self.session.log_once("online:process", f"{why} at step {step}; online checking is off "
                              "for the rest of this run, the trace is still written: check it "
                              f"with `traincheck check {self.session.output_dir} -i FILE`")

    # -- end of run --------------------------------------------------------------------------
    def _finish(self) -> tuple[list[Violation], CheckResult] | None:
        self._stop_timer.set()
        self._leftover.set()  # (wakes the send loop, which sees the stop)
        if self.off or threading.current_thread() is self._reader:
            self._proc.kill()  # cut off from the run (the user was told), or ``stop`` now
            self._proc.wait()
            return None
        deadline = time.monotonic() + FINISH_TIMEOUT
        self.session.writer.flush()  # the run's last events, through the tap
        self._send(until=deadline)
        if self._buf and not self.off:
            self._turn_off(f"the checker process did not take the run's last "
                           f"{len(self._buf) >> 10} KB of events in {FINISH_TIMEOUT:.0f} s")
            self._proc.kill()
        with self._lock:
            self._sent_all = True
        try:
            self._proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        if not self._done.wait(max(0.0, deadline - time.monotonic())):
            self._proc.kill()
            self.session.log_once("online:finish", f"the checker process did not finish in "
                                  f"{FINISH_TIMEOUT:.0f} s and was stopped; check the trace "
                                  "with `traincheck check` for a complete result")
        self._proc.wait()
        if self._finished is None:
            if not self.off:  # (off: the user was told why)
                self.session.log_once("online:result", "the checker process ended without a "
                                      f"result (exit status {self._proc.returncode}); check "
                                      "the trace with `traincheck check`")
            return None
        return self._finished.pending, self._finished.result


def _spawn(spec: WorkerSpec) -> subprocess.Popen[bytes]:
    # The checker must not be traced itself: without a session config the bootstrap on
    # PYTHONPATH stays idle (the rest of PYTHONPATH is kept: plugins may live there).
    env = {k: v for k, v in os.environ.items() if k != SESSION_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", "traincheck_core.check.worker", msgspec.json.encode(spec).decode()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
    # Training comes first: when every core is busy, the scheduler favours the training
    # process and the checker catches up in the gaps (its backlog is bounded).
    try:
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, proc.pid, min(19, mine + NICENESS))
    except OSError:
        pass
    return proc


def _pin(pid: int, spec: str, session: Session) -> None:
    """Keep the checker process on the cores the user chose (``--checker-cpus``), e.g. off
    the cores training computes on; the ones this process may not use are left out."""
    try:
        cpus = parse_cpus(spec) & os.sched_getaffinity(0)
        if cpus:
            os.sched_setaffinity(pid, cpus)
            return
        why = "none of them is usable by this process"
    except (OSError, AttributeError, UsageError) as exc:  # AttributeError: not Linux
        why = str(exc)
    session.log_once("online:cpus", f"could not keep the checker process on CPUs {spec} "
                     f"({why}); it runs on any core")


def _thread(target, name: str) -> threading.Thread:
    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    return t
