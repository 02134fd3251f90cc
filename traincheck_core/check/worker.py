"""The checker process: checks one training process's events off its training thread.

Started by :class:`traincheck_core.check.remote.ProcessChecker` as
``python -m traincheck_core.check.worker SPEC_JSON``; reads framed events on stdin, answers
:mod:`~traincheck_core.check.channel` messages on stdout. A reader thread drains the pipe at
once, so the training process never waits for the engine; the engine works through the
backlog at its own pace on another core.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time

import msgspec

from ..events import Event
from ..invariants import Violation
from ..trace.reader import Record
from .channel import (
    Failed,
    Finished,
    FrameReader,
    Ready,
    Reported,
    WorkerSpec,
    frame,
    read_chunks,
)
from .engine import CheckEngine

_EVENTS = msgspec.msgpack.Decoder(Event)


class _Outbox:
    """Messages to the training process; a vanished reader only ends the sending."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.enc = msgspec.msgpack.Encoder()
        self.lock = threading.Lock()

    def send(self, msg: Ready | Reported | Finished | Failed) -> None:
        data = frame(self.enc.encode(msg))
        with self.lock:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view):]
            except OSError:  # the training process is gone: nobody left to tell
                pass


def build_engine(spec: WorkerSpec, out: _Outbox) -> CheckEngine:
    from ..plugins.manager import make_plugin_manager
    from .online import checked_here, load_all
    from .plan import available_relations

    pm, _ = make_plugin_manager(spec.plugins, autoload=spec.autoload)
    relations = available_relations(pm)
    invariants = checked_here(load_all(spec.invariants), relations, spec.skip_cross_process)

    def failed(relation: str, exc: BaseException) -> None:
        out.send(Failed(f"the {relation} checker failed ({type(exc).__name__}: {exc}) and is "
                        "off; its invariants are not checked in this process"))

    def repeat(v: Violation) -> None:
        out.send(Reported(v, first=False))

    return CheckEngine(invariants, relations, on_error=failed, on_repeat=repeat,
                       source_names={0: spec.source})


#: Chunks (of up to 1 MB) read ahead of the engine. When the engine falls this far behind, the
#: reader stops reading, the pipe fills, and the training process keeps the rest in its own
#: bounded buffer (beyond which it switches online checking off and says so).
READ_AHEAD = 64


def _drain(fd: int, chunks: queue.Queue[bytes | None]) -> None:
    try:
        for chunk in read_chunks(fd):
            chunks.put(chunk)
    finally:
        chunks.put(None)


def serve(spec: WorkerSpec, in_fd: int, out: _Outbox) -> None:
    engine = build_engine(spec, out)
    out.send(Ready())
    started = time.process_time()  # check_seconds: checking, not the interpreter's start
    chunks: queue.Queue[bytes | None] = queue.Queue(READ_AHEAD)
    threading.Thread(target=_drain, args=(in_fd, chunks), daemon=True).start()
    frames = FrameReader()
    while (chunk := chunks.get()) is not None:
        for data in frames.feed(chunk):
            for v in engine.feed_record(Record(0, _EVENTS.decode(data))):
                out.send(Reported(v, first=True))
    pending = engine.finish()
    result = engine.result()
    result.check_seconds = time.process_time() - started
    out.send(Finished(pending, result))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Ctrl-C reaches the whole process group: the training process decides when checking
    # ends (it closes our stdin), so its final results are not lost to a traceback here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = _Outbox(sys.stdout.fileno())
    try:
        spec = msgspec.json.decode(argv[0], type=WorkerSpec)
        serve(spec, sys.stdin.fileno(), out)
    except Exception as exc:  # say why, in words the training process passes on
        out.send(Failed(f"{type(exc).__name__}: {exc}"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
