"""The per-process tracing session: the one object adapters talk to.

A session owns the trace writer, the current meta variables, the call-id counter, the
suppression flag that keeps traincheck's own work out of the trace, and the fail-open
bookkeeping. There is at most one per process (:func:`get_session`).

Hot path contract for adapters: call ``session.emit(event)`` (a plain bound method, no pluggy),
take ids from ``session.next_call_id()``, stamp events with ``session.now()``, and wrap probe
bodies in ``try/except Exception`` that calls :meth:`Session.probe_failed` — but let
:class:`~traincheck_core.ViolationError` through, it is meant for the user.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import msgspec
import pluggy

from . import __version__
from .config import SESSION_ENV, Config
from .errors import ViolationError
from .events import SCHEMA_VERSION, Event, Header, MetaUpdate, MetaValue, Summary
from .plugins.manager import PluginInfo, make_plugin_manager
from .summary import SummaryRegistry
from .trace.format import trace_file_name
from .trace.writer import TraceWriter

__all__ = ["Session", "InstrumentationPlan", "ContentRule", "CONTENT_NONE", "CONTENT_STEP_END",
           "CONTENT_ALWAYS", "get_session", "start_session", "annotate",
           "default_output_dir", "logger"]

logger = logging.getLogger("traincheck")
_session: Session | None = None
_start_lock = threading.Lock()


#: How much of a content attribute (a fingerprint such as ``data`` or ``grad``) a variable needs.
CONTENT_NONE, CONTENT_STEP_END, CONTENT_ALWAYS = 0, 1, 2


class ContentRule(msgspec.Struct, kw_only=True, frozen=True):
    """Variables whose content of ``attr`` some deployed invariant compares.

    A variable matches when, for every key of ``where``, its static attribute of that name
    (``name``, ``vtype``, ``is_param``, ``dtype``, ``device``) is one of the listed values, and
    its name is not in ``exclude``. ``step_end``: the invariant reads the value only in the
    state a variable has when a step ends (not at every change), so the adapter may compute
    it once per step, at the step's end. ``changes``: the invariant compares the value only
    with the same variable's previous value (did it change?), never with another variable's,
    another rank's or a constant, so the adapter may answer from its record of writes instead
    of hashing the content (see :meth:`InstrumentationPlan.content_by_writes`).
    """

    attr: str
    where: dict[str, list[Any]] = {}
    exclude: list[str] = []
    step_end: bool = False
    changes: bool = False

    def matches(self, static: dict[str, Any]) -> bool:
        if self.exclude and static.get("name") in self.exclude:
            return False
        for key, values in self.where.items():
            if static.get(key) not in values:
                return False
        return True


class InstrumentationPlan(msgspec.Struct, kw_only=True):
    """What to instrument. ``full`` means everything; otherwise only what is named.

    Names are exact API names (``torch.optim.Optimizer.step``) or variable names; a trailing
    ``*`` matches a prefix. ``every`` observes variable state every N-th step only.

    ``content`` says which variables need the *content* of a fingerprint attribute (``data``,
    ``grad``): ``None`` (full tracing, or a relation that cannot say) means every variable, at
    every observation. Otherwise a variable needs content only if a rule for that attribute
    matches it (:meth:`content_mode`); for the others the adapter may record only whether the
    attribute is set (any fixed non-None token instead of a fingerprint): preconditions and
    flag invariants read only that.

    ``arg_content`` lists the APIs whose argument and return-value content (tensor
    fingerprints) some invariant compares; ``None`` means every API. The adapter may leave the
    fingerprints out of the other APIs' summaries.
    """

    full: bool = True
    apis: list[str] = []
    variables: list[str] = []
    attributes: list[str] = []
    every: int = 1
    content: list[ContentRule] | None = None
    arg_content: list[str] | None = None

    def wants_api(self, name: str) -> bool:
        return self.full or _matches(name, self.apis)

    def wants_arg_content(self, api: str) -> bool:
        """Whether the content of ``api``'s arguments and return value (fingerprints) is
        needed."""
        return self.full or self.arg_content is None or _matches(api, self.arg_content)

    def wants_variable(self, name: str) -> bool:
        return self.full or _matches(name, self.variables)

    def content_mode(self, attr: str, static: dict[str, Any]) -> int:
        """``CONTENT_ALWAYS``, ``CONTENT_STEP_END`` or ``CONTENT_NONE`` for the variable with
        static attributes ``static`` (keys as in :class:`ContentRule`)."""
        if self.full or self.content is None:
            return CONTENT_ALWAYS
        rules = self._rules(attr, static)
        if not rules:
            return CONTENT_NONE
        return CONTENT_STEP_END if all(r.step_end for r in rules) else CONTENT_ALWAYS

    def content_by_writes(self, attr: str, static: dict[str, Any]) -> bool:
        """Whether every deployed invariant that compares this variable's ``attr`` only asks
        whether it changed from the variable's own previous value (``ContentRule.changes``).
        Then any value that differs after every write to the content and stays the same
        without one serves in place of a fingerprint (an adapter may still hash)."""
        if self.full or self.content is None:
            return False
        rules = self._rules(attr, static)
        return bool(rules) and all(r.changes for r in rules)

    def _rules(self, attr: str, static: dict[str, Any]) -> list[ContentRule]:
        return [r for r in self.content or () if r.attr == attr and r.matches(static)]

    def content_at_step_end(self) -> bool:
        """Whether some content is needed only when a step ends."""
        return not self.full and self.content is not None and any(
            r.step_end for r in self.content)


def _matches(name: str, patterns: list[str]) -> bool:
    for p in patterns:
        if p == name or (p.endswith("*") and name.startswith(p[:-1])):
            return True
    return False


def default_output_dir() -> str:
    return f"traincheck-run-{time.strftime('%Y%m%d-%H%M%S')}"


def _env_int(name: str) -> int | None:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


class Session:
    """One process's tracing session. Create with :func:`start_session`."""

    def __init__(self, config: Config, pm: pluggy.PluginManager, plugins: list[PluginInfo]
                 ) -> None:
        self.config = config
        self.pm = pm
        self.plugins = plugins
        self.output_dir = Path(config.output or default_output_dir())
        self.run_id = config.run_id or uuid.uuid4().hex[:12]
        self.meta: dict[str, MetaValue] = {}
        self._user_meta: dict[str, MetaValue] = {}
        self.plan = InstrumentationPlan()
        self.summaries = SummaryRegistry()
        self.disabled_probes: set[str] = set()
        self._logged: set[str] = set()
        self._tls = threading.local()
        self._ids = iter(range(1, 1 << 62)).__next__
        self._sinks: list[tuple[Callable[..., None], bool]] = []  # (sink, takes frames)
        self._taps: list[Callable[[bytes], None]] = []
        self.violations: list[Any] = []
        self.closed = False
        self.writer = self._open_writer()
        # the hot path: the writer's own emit until a sink is added (its return value, the
        # encoded frame, is for sinks; callers ignore it)
        self.emit: Callable[[Event], object] = self.writer.emit

    # -- trace ---------------------------------------------------------------------------
    def _open_writer(self) -> TraceWriter:
        rank = _env_int("RANK")
        path = self.output_dir / trace_file_name(socket.gethostname(), os.getpid(), rank)
        # Ask the plugins first (this may import a framework: seconds): the file is created only
        # when its header can follow at once, so a process killed early leaves no headerless file.
        frameworks: dict[str, str] = {}
        for part in self.pm.hook.traincheck_framework_versions():
            frameworks.update(part or {})
        writer = TraceWriter(path)
        writer.emit(Header(
            schema=SCHEMA_VERSION, run_id=self.run_id, host=socket.gethostname(),
            pid=os.getpid(), ppid=os.getppid(), rank=rank, world_size=_env_int("WORLD_SIZE"),
            local_rank=_env_int("LOCAL_RANK"), python=sys.version.split()[0],
            traincheck=__version__, frameworks=frameworks,
            plugins={p.name: p.version or "?" for p in self.plugins if p.loadable},
            argv=list(sys.argv), started=time.time(), t=time.monotonic_ns()))
        if self.meta:
            writer.emit(MetaUpdate(t=time.monotonic_ns(), values=dict(self.meta)))
        writer.flush()  # a process killed at any point after this leaves a file with a header
        return writer

    @staticmethod
    def now() -> int:
        """The event clock: monotonic nanoseconds, comparable across processes on one host."""
        return time.monotonic_ns()

    def next_call_id(self) -> int:
        return self._ids()

    def add_sink(self, sink: Callable[..., None], *, frames: bool = False) -> None:
        """Also deliver every event to ``sink`` (the online checker): ``sink(event)``, or with
        ``frames`` ``sink(event, frame)``, where ``frame`` is the event as the trace writer
        encoded it (``None`` once the trace is closed). Add sinks before instrumenting:
        adapters may cache ``session.emit``."""
        self._sinks.append((sink, frames))
        write = self.writer.emit
        plain = tuple(s for s, f in self._sinks if not f)
        framed = tuple(s for s, f in self._sinks if f)

        def emit(event: Event) -> None:
            frame = write(event)
            for s in plain:
                s(event)
            for s in framed:
                s(event, frame)

        self.emit = emit

    def add_tap(self, tap: Callable[[bytes], None]) -> None:
        """Hand ``tap`` every batch of frames the trace writer writes from now on (see
        :meth:`TraceWriter.add_tap`), and stream them at each meta update (a new step or
        stage), on the thread that updates it, so that a consumer such as the checker process
        gets each step's events as soon as it ends; within long steps the writer also streams
        at the first event 100 ms after the last time. No helper thread takes the GIL for it.
        Unlike a sink, a tap costs nothing per event: it is the cheap way to stream the
        trace elsewhere."""
        self._taps.append(tap)
        self.writer.add_tap(tap)

    @property
    def frames_only(self) -> bool:
        """No sink in this process reads event objects: every event is only encoded (for the
        trace and the checker process). An adapter may then emit pre-encoded constant parts
        (``msgspec.Raw``) that encode to the same bytes."""
        return all(frames for _, frames in self._sinks)

    # -- meta variables --------------------------------------------------------------------
    def set_meta(self, **values: MetaValue) -> None:
        """Adapters report meta variables here; keys the user annotated are left alone."""
        changed = {k: v for k, v in values.items()
                   if k not in self._user_meta and self.meta.get(k, _MISSING) != v}
        if changed:
            self.meta.update(changed)
            self.emit(MetaUpdate(t=self.now(), values=changed))
            if self._taps:
                self.writer.stream()

    def annotate(self, **values: MetaValue) -> None:
        """User overrides of meta variables (``None`` hands a key back to the heuristics)."""
        changed: dict[str, MetaValue] = {}
        for k, v in values.items():
            if v is None:
                self._user_meta.pop(k, None)
                continue
            self._user_meta[k] = v
            if self.meta.get(k, _MISSING) != v:
                self.meta[k] = changed[k] = v
        if changed:
            self.emit(MetaUpdate(t=self.now(), values=changed))
            if self._taps:
                self.writer.stream()

    # -- self-suppression and fail-open ----------------------------------------------------
    def suppressed(self) -> AbstractContextManager[None]:
        """Nothing traincheck does inside this block is traced."""
        return _Suppressed(self._tls)

    def is_suppressed(self) -> bool:
        return getattr(self._tls, "off", False)

    def probe_failed(self, probe: str, exc: BaseException) -> None:
        """Switch ``probe`` off after an internal error, logging it once.

        A :class:`ViolationError` is not an internal error: ``--on-violation raise`` meant it
        for the user's loop, so it is raised again (adapters call this from their ``except``
        blocks, so it leaves the probe there)."""
        if isinstance(exc, ViolationError):
            raise exc
        self.disabled_probes.add(probe)
        self.log_once(f"probe:{probe}",
                      f"instrumentation probe {probe!r} failed and is now off "
                      f"({type(exc).__name__}: {exc}); training continues untraced there")

    def log_once(self, key: str, message: str, level: int = logging.WARNING) -> None:
        if key not in self._logged:
            self._logged.add(key)
            logger.log(level, message)

    def summarize(self, value: Any) -> Summary:
        return self.summaries.summarize(value)

    # -- lifecycle -------------------------------------------------------------------------
    def close(self, reason: str = "exit") -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.pm.hook.traincheck_session_finish(session=self, reason=reason)
        except Exception as exc:
            logger.warning("a plugin failed while finishing the session: %s", exc)
        try:
            self.pm.hook.traincheck_uninstrument(session=self)
        except Exception as exc:
            logger.warning("a plugin failed to uninstrument: %s", exc)
        self.writer.close(reason=reason, t=self.now())

    def _reopen_after_fork(self) -> None:
        self.writer.abandon_after_fork()
        self._tls = threading.local()
        self.writer = self._open_writer()
        self.emit = self.writer.emit
        sinks, self._sinks = self._sinks, []
        for s, frames in sinks:
            self.add_sink(s, frames=frames)
        for tap in self._taps:
            self.writer.add_tap(tap)


_MISSING = object()


class _Suppressed:
    """``Session.suppressed()``: a class rather than a generator-based context manager,
    which costs several times as much, because every probe enters one."""

    __slots__ = ("_tls", "_prev")

    def __init__(self, tls: threading.local) -> None:
        self._tls = tls

    def __enter__(self) -> None:
        self._prev = getattr(self._tls, "off", False)
        self._tls.off = True

    def __exit__(self, *exc: object) -> None:
        self._tls.off = self._prev


def get_session() -> Session | None:
    """The running session of this process, if any."""
    return _session


def annotate(**values: MetaValue) -> None:
    """Set meta variables from user code, overriding the adapters' heuristics, e.g.
    ``traincheck.annotate(stage="eval")``. A no-op when traincheck is not running."""
    if _session is not None:
        _session.annotate(**values)


def _configure_logging(quiet: bool) -> None:
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("traincheck: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.ERROR if quiet else logging.INFO)


def start_session(config: Config, *, extra_plugins: Sequence[Any] = (), export_env: bool = True
                  ) -> Session:
    """Start this process's session (idempotent: returns the running one).

    Loads and configures plugins, writes the trace header, attaches the online checker when
    invariants are configured, instruments, and arranges for the trace to be closed at exit,
    on SIGTERM/SIGHUP and in forked children. With ``export_env`` the config is exported so
    that child processes started from here trace into the same run directory.
    """
    global _session
    with _start_lock:
        if _session is not None:
            return _session
        _configure_logging(config.quiet)
        pm, infos = make_plugin_manager(config.plugins, autoload=config.autoload,
                                        extra=list(extra_plugins))
        for info in infos:
            if not info.loadable:
                logger.info("plugin %s skipped: %s", info.name, info.skip_reason)
        if config.output is None:
            config = msgspec.structs.replace(config, output=default_output_dir())
        if config.run_id is None:
            config = msgspec.structs.replace(config, run_id=uuid.uuid4().hex[:12])
        pm.hook.traincheck_configure(config=config)
        session = Session(config, pm, infos)
        for mapping in pm.hook.traincheck_value_summarizers():
            for key, fn in (mapping or {}).items():
                session.summaries.register(key, fn)
        _session = session
    if export_env:
        export_session_env(config)
    pm.hook.traincheck_session_start(session=session)
    if config.invariants:
        from .check.online import attach_online_checker  # only when checking

        session.plan = attach_online_checker(session)
    _instrument(session)
    _install_exit_handlers(session)
    return session


def _instrument(session: Session) -> None:
    for impl in session.pm.hook.traincheck_instrument.get_hookimpls():
        try:
            impl.function(session=session, plan=session.plan)
        except Exception as exc:  # fail open: the program runs on without this plugin
            logger.warning("plugin %s failed to instrument and is disabled: %s: %s",
                           impl.plugin_name, type(exc).__name__, exc)
            session.pm.unregister(impl.plugin)


def export_session_env(config: Config) -> None:
    """Make child processes of this one join the run (see ``traincheck_core.bootstrap``)."""
    from .bootstrap import bootstrap_dir

    os.environ[SESSION_ENV] = msgspec.json.encode(config).decode()
    boot = str(bootstrap_dir())
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if boot not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([boot, *parts])


def _install_exit_handlers(session: Session) -> None:
    atexit.register(session.close)
    os.register_at_fork(after_in_child=_after_fork_child)
    if threading.current_thread() is not threading.main_thread():
        return
    for signame in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, signame, None)
        if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)


def _on_signal(signum: int, frame: Any) -> None:
    # Close the trace, then die of the same signal so the exit status is what it would be.
    if _session is not None:
        _session.close(reason=f"signal:{signal.Signals(signum).name}")
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _after_fork_child() -> None:
    if _session is not None and not _session.closed:
        try:
            _session._reopen_after_fork()
        except Exception as exc:  # never break the forked worker
            logger.warning("could not open a trace in forked process %d: %s", os.getpid(), exc)
