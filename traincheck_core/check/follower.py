"""Cross-process invariants checked live by the launcher of ``traincheck run``.

A process's own checker sees only its own events, so an invariant that compares the processes
of a run (a relation with ``cross_process``, e.g. replicas equal across ranks) is checked by
the launcher instead: :class:`LauncherFollower` tails the run directory in a background thread
with the same engine as ``traincheck check --follow``. It only polls for trace files until a
second one appears (a single-process run pays for nothing but that), stops with a final drain
when the program exits, and never breaks the run: a failure is reported once and checking of
those invariants is left to ``traincheck check``.
"""

from __future__ import annotations

import heapq
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import msgspec

from ..invariants import Invariant, Violation
from ..relations.base import Relation
from ..trace.reader import Record, TraceFile, trace_files
from .engine import CheckEngine
from .sinks import ViolationLog, violation_line

__all__ = ["LauncherFollower", "cross_process_invariants", "FOLLOWED_ENV", "FOLLOW_INTERVAL"]

#: Set in the program's environment when the launcher checks the cross-process invariants,
#: so the in-process checkers leave them out (a violation is reported once).
FOLLOWED_ENV = "TRAINCHECK_LAUNCHER_FOLLOWS"

#: How often a followed process writes its trace and the launcher reads the traces (seconds).
#: The delay of a cross-process report is about the sum of the two plus the slowest rank's
#: step; a write every 50 ms costs the training process a background write per interval.
FOLLOW_INTERVAL = 0.05


def cross_process_invariants(invariants: Sequence[Invariant],
                             relations: Mapping[str, Relation]) -> list[Invariant]:
    """The invariants no single process can check: their relation compares processes."""
    return [i for i in invariants
            if getattr(relations.get(i.relation), "cross_process", False)]


def _follow(run_dir: Path, stop: threading.Event, poll: float) -> Iterator[Record]:
    """Records of every trace file in ``run_dir`` as they appear, until ``stop`` is set; then
    one last read of everything written so far (the final drain)."""
    order: list[TraceFile] = []
    known: set[Path] = set()
    while True:
        last = stop.is_set()  # decided before reading, so nothing written before it is lost
        if run_dir.is_dir():
            for f in trace_files(run_dir):
                if f not in known:
                    known.add(f)
                    order.append(TraceFile(f))
        if len(order) >= 2:  # one process alone has nobody to be compared with: read nothing
            batch = [[Record(i, ev) for ev in tf.read_available()] for i, tf in enumerate(order)]
            yield from heapq.merge(*batch, key=lambda r: r.event.t)
        if last:
            return
        stop.wait(poll)


class LauncherFollower:
    """Check ``invariants`` over ``run_dir`` in a daemon thread while the program runs.

    Each new violation is printed (unless ``quiet``), appended to ``violations.jsonl`` and
    passed to ``on_violation`` (the launcher stops the program there in raise/stop mode).
    """

    def __init__(self, run_dir: Path, invariants: Sequence[Invariant],
                 relations: Mapping[str, Relation], *, quiet: bool = False,
                 on_violation: Callable[[Violation], None] | None = None,
                 poll: float = FOLLOW_INTERVAL) -> None:
        self.run_dir = Path(run_dir)
        self.invariants = list(invariants)
        self.relations = relations
        self.quiet = quiet
        self.on_violation = on_violation
        self.poll = poll
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.violations: list[Violation] = []
        self.failed = False
        self._stop = threading.Event()
        self._log: ViolationLog | None = None
        self._thread = threading.Thread(target=self._run, name="traincheck-follower",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self, timeout: float = 120.0) -> None:
        """The program exited: drain what it wrote, judge what is pending, write the result."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._say("checking the cross-process invariants did not finish in time; check "
                      f"the run with `traincheck check {self.run_dir}`")

    # -- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            engine = CheckEngine(self.invariants, self.relations, on_error=self._checker_failed,
                                 on_repeat=self._write)
            for rec in _follow(self.run_dir, self._stop, self.poll):
                engine.source_names.setdefault(rec.source, self.name)
                for v in engine.feed_record(rec):
                    self._report(v)
            for v in engine.finish():
                self._report(v, at_exit=True)
            self._write_result(engine)
        except Exception as exc:  # never break the run: say so once, leave it to check
            self.failed = True
            self._say(f"checking the cross-process invariants live failed "
                      f"({type(exc).__name__}: {exc}); check the run afterwards with "
                      f"`traincheck check {self.run_dir} -i INVARIANTS`")
        finally:
            if self._log is not None:
                self._log.close()

    def _report(self, v: Violation, at_exit: bool = False) -> None:
        self.violations.append(v)
        if not self.quiet:
            print(f"traincheck: {violation_line(v)}", file=sys.stderr, flush=True)
        self._write(v)
        if not at_exit and self.on_violation is not None:
            self.on_violation(v)

    def _write(self, v: Violation) -> None:
        # the event clock of every process on this host; a repeat is only logged
        v.reported_t = v.reported_t or time.monotonic_ns()
        if self._log is None:
            self._log = ViolationLog(self.run_dir / "violations.jsonl")
        self._log.write(v)

    def _write_result(self, engine: CheckEngine) -> None:
        # Outcomes only: the processes and events are counted by the processes' own results.
        result = engine.result()
        if engine.events == 0:  # fewer than two processes ever wrote a trace
            for o in result.outcomes:
                if o.status == "not-triggered":
                    o.why_not = "only one process was traced: nothing to compare it with"
        result.events = result.processes = 0
        result.frameworks = {}
        host, pid = socket.gethostname(), os.getpid()
        path = self.run_dir / f"checkresult-{host}-{pid}.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(msgspec.json.encode(result))
        os.replace(tmp, path)

    def _checker_failed(self, relation: str, exc: BaseException) -> None:
        self._say(f"the {relation} checker failed ({type(exc).__name__}: {exc}) and is off; "
                  "its invariants are not checked live")

    def _say(self, text: str) -> None:
        print(f"traincheck: {text}", file=sys.stderr, flush=True)
