"""Online checking inside the training process.

:func:`attach_online_checker` is called by :func:`traincheck_core.start_session` when
invariants are configured. It loads them, compiles the instrumentation plan, and adds the
engine as a session sink. Each new violation is reported at once (stderr line, JSON Lines
file, ``traincheck_violation`` hook); ``on_violation`` decides what happens to training:

* ``warn``: nothing more, training goes on;
* ``raise``: :class:`~traincheck_core.ViolationError` is raised from the probe that saw the
  violation, i.e. into the training loop (adapters let it through);
* ``stop``: traces are flushed and the process exits with status :data:`STOP_EXIT_CODE`.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING

import msgspec

from .. import __version__
from ..errors import ViolationError
from ..events import SCHEMA_VERSION, Event, Header, MetaUpdate
from ..invariants import Invariant, Violation, load_invariants
from ..plugins import hookimpl
from ..trace.reader import Record
from .engine import CheckEngine
from .follower import FOLLOW_INTERVAL, FOLLOWED_ENV, cross_process_invariants
from .plan import available_relations, compile_plan
from .result import CheckResult
from .sinks import ViolationLog, violation_line

if TYPE_CHECKING:  # pragma: no cover
    from ..session import InstrumentationPlan, Session

__all__ = ["attach_online_checker", "OnlineChecker", "STOP_EXIT_CODE", "load_all"]

#: Exit status of a process stopped by ``--on-violation stop``.
STOP_EXIT_CODE = 3
VIOLATIONS_FILE = "violations.jsonl"


def load_all(paths: list[str]) -> list[Invariant]:
    """Invariants of every file, first occurrence of an id wins."""
    out: dict[str, Invariant] = {}
    for p in paths:
        for inv in load_invariants(p):
            out.setdefault(inv.id, inv)
    return list(out.values())


def attach_online_checker(session: Session) -> InstrumentationPlan:
    """Start checking this process's events against ``session.config.invariants``.

    Raises :class:`~traincheck_core.InvariantFileError` for a missing or malformed file.
    Returns the plan the adapters should instrument.
    """
    invariants = load_all(list(session.config.invariants))
    relations = available_relations(session.pm)
    followed = bool(os.environ.get(FOLLOWED_ENV))  # the launcher checks cross-process ones
    if followed:  # it reads this trace while we write it: write often enough to be timely
        session.writer.set_interval(FOLLOW_INTERVAL)
    checker: Reporter
    if use_checker_process(session.config):  # it reads the trace's frames (a session tap)
        from .remote import ProcessChecker

        checker = ProcessChecker(session, skip_cross_process=followed)
    else:
        inline = OnlineChecker(session, checked_here(invariants, relations, followed),
                               relations)
        session.add_sink(inline.sink)
        checker = inline
    session.pm.register(checker, name=f"traincheck-online-checker-{id(checker)}")
    unknown = sorted({i.relation for i in invariants} - set(relations))
    if unknown:
        session.log_once("online:unknown", f"{len(invariants)} invariants loaded; relations "
                         f"{', '.join(unknown)} are not available, their invariants are "
                         "not checked")
    return compile_plan(invariants, relations)  # all: the launcher reads this trace too


def checked_here(invariants: list[Invariant], relations, followed: bool) -> list[Invariant]:
    """What one process checks: when the launcher follows the run, it checks the
    cross-process invariants itself over every process's trace."""
    if not followed:
        return invariants
    cross = {i.id for i in cross_process_invariants(invariants, relations)}
    return [i for i in invariants if i.id not in cross]


def use_checker_process(config) -> bool:
    """``auto``: a checker process for ``warn`` (training never waits for checking); the
    training thread for ``raise``/``stop``, which must act inside the call that shows the
    violation."""
    if config.checker == "auto":
        return config.on_violation == "warn"
    return config.checker == "process"


class Reporter:
    """What every online checker does with a violation, and at the end of the run."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.mode = session.config.on_violation
        self.quiet = session.config.quiet
        self.log = ViolationLog(Path(session.output_dir) / VIOLATIONS_FILE)
        self.off = False
        self.finished = False

    def report(self, v: Violation, *, at_exit: bool = False) -> None:
        """Tell the user now; then warn, raise or stop."""
        with self.session.suppressed():
            self._publish(v)
        if at_exit or self.mode == "warn":
            return
        if self.mode == "raise":
            raise ViolationError(f"traincheck: {violation_line(v)}")
        self._stop(v)

    def _publish(self, v: Violation) -> None:
        v.reported_t = self.session.now()
        self.session.violations.append(v)
        if not self.quiet:
            print(f"traincheck: {violation_line(v)}", file=sys.stderr, flush=True)
        self._log(v)
        try:
            self.session.pm.hook.traincheck_violation(violation=v, session=self.session)
        except Exception as exc:
            self.session.log_once("online:hook", f"a traincheck_violation plugin failed: {exc}")

    def _log(self, v: Violation) -> None:
        v.reported_t = v.reported_t or self.session.now()  # a repeat is only logged
        try:
            self.log.write(v)
        except OSError as exc:
            self.session.log_once("online:log", f"cannot append to {self.log.path}: {exc}")

    def _stop(self, v: Violation) -> None:
        print(f"traincheck: stopping training (--on-violation stop) at step {v.step}, rank "
              f"{v.rank}: invariant {v.invariant} was violated. Traces and violations are in "
              f"{self.session.output_dir}; inspect them with `traincheck report "
              f"{self.session.output_dir}`.", file=sys.stderr, flush=True)
        self.close()
        self.session.close(reason="violation")
        os._exit(STOP_EXIT_CODE)

    @hookimpl
    def traincheck_session_finish(self, session: Session, reason: str) -> None:
        if session is self.session:
            self.close()

    def close(self) -> None:
        """Flush pending checks, write this process's result, print a one-line summary."""
        if self.finished:
            return
        self.finished = True
        try:
            got = self._finish()
            if got is None:
                return
            pending, result = got
            for v in pending:
                self.report(v, at_exit=True)
            result.invariants_file = list(self.session.config.invariants)
            self._write_result(result)
            if not self.quiet and _says_something(result):
                print(f"traincheck: {_who()}{summary_line(result)}", file=sys.stderr,
                      flush=True)
        except Exception as exc:
            self.session.log_once("online:close", f"could not finish online checking: {exc}")
        finally:
            self.log.close()

    def _finish(self) -> tuple[list[Violation], CheckResult] | None:
        """Violations decidable only at the end, and the result (None: there is none)."""
        raise NotImplementedError

    def _write_result(self, result: CheckResult) -> None:
        name = f"checkresult-{socket.gethostname()}-{os.getpid()}.json"
        path = Path(self.session.output_dir) / name
        tmp = path.with_name(name + ".tmp")
        tmp.write_bytes(msgspec.json.encode(result))
        os.replace(tmp, path)


class OnlineChecker(Reporter):
    """The engine on the training thread, as a session sink: a violation is known inside the
    call that shows it, so ``raise`` and ``stop`` act right there. Fails open."""

    def __init__(self, session: Session, invariants: list[Invariant], relations) -> None:
        super().__init__(session)
        self.engine = CheckEngine(invariants, relations, on_error=self._checker_failed,
                                  source_names={0: source_name()},
                                  on_repeat=self._log)
        for event in introduction(session):
            self.engine.feed_record(Record(0, event))
        # Re-entrant: a SIGTERM handler closes the session on the training thread, possibly
        # while that thread is inside ``sink`` holding this lock.
        self._lock = threading.RLock()
        self.busy = 0.0  # seconds spent checking on the training thread

    # -- the hot path ------------------------------------------------------------------------
    def sink(self, event: Event) -> None:
        if self.off:
            return
        try:
            t0 = perf_counter()
            with self._lock:
                new = self.engine.feed_record(Record(0, event))
            self.busy += perf_counter() - t0
        except Exception as exc:  # never harm training: switch checking off, say so once
            self.off = True
            self.session.log_once("online:engine", f"online checking failed and is off "
                                  f"({type(exc).__name__}: {exc}); the trace is still written, "
                                  "check it later with `traincheck check`")
            return
        for v in new:
            self.report(v)

    def _checker_failed(self, relation: str, exc: BaseException) -> None:
        self.session.log_once(f"online:checker:{relation}",
                              f"the {relation} checker failed ({type(exc).__name__}: {exc}) "
                              "and is off; its invariants are not checked in this process")

    def _finish(self) -> tuple[list[Violation], CheckResult]:
        with self._lock:
            pending = [] if self.off else self.engine.finish()
        result = self.engine.result()
        result.check_seconds = self.busy
        return pending, result


def source_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def introduction(session: Session) -> list[Event]:
    """The header and meta were written before any checker existed: what a checker must be
    told first."""
    s = session
    head = Header(schema=SCHEMA_VERSION, run_id=s.run_id, host=socket.gethostname(),
                  pid=os.getpid(), ppid=os.getppid(), rank=_env_int("RANK"),
                  world_size=_env_int("WORLD_SIZE"), local_rank=_env_int("LOCAL_RANK"),
                  python=sys.version.split()[0], traincheck=__version__, frameworks={},
                  plugins={}, argv=list(sys.argv), started=time.time(), t=s.now())
    events: list[Event] = [head]
    if s.meta:
        events.append(MetaUpdate(t=s.now(), values=dict(s.meta)))
    return events


def _env_int(name: str) -> int | None:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


#: Set by ``traincheck run`` for its program's processes: it prints the check merged over all
#: of them when they are done.
MERGED_SUMMARY_ENV = "TRAINCHECK_MERGED_SUMMARY"


def _says_something(result) -> bool:
    """Whether this process's one-line summary tells the user anything: not for a process in
    which no invariant triggered (a launcher, a data worker, a spawning parent) when the
    merged summary follows; it would read as if the run had checked nothing."""
    return bool(result.violated or result.by_status("held")) or \
        not os.environ.get(MERGED_SUMMARY_ENV)


def _who() -> str:
    rank = _env_int("RANK")
    return "" if rank is None else f"rank {rank}: "


def summary_line(result) -> str:
    violated = result.violated
    held = result.by_status("held")
    never = result.by_status("not-triggered")
    text = (f"checked {len(result.outcomes)} invariants: {len(violated)} violated, "
            f"{len(held)} held, {len(never)} never triggered")
    if violated:
        steps = [o.first_step for o in violated if o.first_step is not None]
        repeats = sum(o.repeats for o in violated)
        if steps:
            text += f"; first violation at step {min(steps)}"
        if repeats:
            text += f"; {repeats} repeated violations counted, not printed"
    return text
