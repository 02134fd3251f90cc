"""``traincheck run``: run a training program with tracing (and checking) in every process."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from ..check.follower import FOLLOWED_ENV, LauncherFollower, cross_process_invariants
from ..check.online import MERGED_SUMMARY_ENV, STOP_EXIT_CODE, load_all
from ..check.plan import available_relations
from ..config import SESSION_ENV, load_config, parse_cpus
from ..errors import UsageError
from ..invariants import Violation, load_invariants
from ..plugins.manager import make_plugin_manager
from ..session import default_output_dir, export_session_env

NAME = "run"
HELP = "run a Python program (SCRIPT or -m MODULE) with traincheck active in every process"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = "traincheck run [options] (SCRIPT | -m MODULE) [ARGS...]"
    p.add_argument("-o", "--output", metavar="DIR",
                   help="run directory for traces and violations (default: a new "
                        "traincheck-run-<timestamp> folder)")
    p.add_argument("-p", "--plugin", action="append", default=[], metavar="NAME",
                   help="plugin to load (repeatable or comma-separated); default: every "
                        "installed plugin unless TRAINCHECK_DISABLE_PLUGIN_AUTOLOAD is set")
    p.add_argument("-i", "--invariants", action="append", default=[], metavar="FILE",
                   help="check these invariants online while the program trains")
    p.add_argument("--on-violation", choices=("warn", "raise", "stop"),
                   help="on a violation: warn and go on (default), raise ViolationError in the "
                        "training loop, or stop the program")
    p.add_argument("--checker", choices=("auto", "process", "inline"),
                   help="where online checking runs: a separate checker process, so training "
                        "never waits for it (default with warn), or the training thread, so "
                        "raise/stop act inside the call that shows the violation (default "
                        "with raise and stop)")
    p.add_argument("--checker-cpus", metavar="LIST",
                   help="cores the checker process may run on, e.g. 3 or 2-3,6 (default: "
                        "any; it runs at a lower priority than training either way)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    _add_plugin_options(p)
    p.add_argument("-m", dest="module", nargs=argparse.REMAINDER, metavar="MODULE",
                   help="run a library module as a script, like python -m")
    p.add_argument("target", nargs=argparse.REMAINDER, metavar="SCRIPT [ARGS...]",
                   help="the program and its arguments")


def _add_plugin_options(p: argparse.ArgumentParser) -> None:
    # Plugin options are known only after loading the plugins; peek at --plugin early.
    selected = _peek_plugins(sys.argv[1:])
    try:
        pm, _ = make_plugin_manager(selected or None)
    except Exception:
        return  # an unknown plugin is reported when the command runs
    group = p.add_argument_group("plugin options")
    pm.hook.traincheck_add_options(group=group)


def _peek_plugins(argv: list[str]) -> list[str]:
    out: list[str] = []
    for i, a in enumerate(argv):
        if a in ("-p", "--plugin") and i + 1 < len(argv):
            out += argv[i + 1].split(",")
        elif a.startswith("--plugin="):
            out += a.split("=", 1)[1].split(",")
    return [x for x in (s.strip() for s in out) if x]


def _check_cpus(spec: str) -> None:
    cpus = parse_cpus(spec)
    if hasattr(os, "sched_getaffinity"):
        usable = os.sched_getaffinity(0)
        if not cpus & usable:
            raise UsageError(f"checker CPUs {spec!r}: none of them is usable here (this "
                             f"process may run on CPUs {_cpu_list(usable)})")


def _cpu_list(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _program(args: argparse.Namespace) -> list[str]:
    if args.module:
        return [sys.executable, "-m", *args.module]
    if not args.target:
        raise UsageError("nothing to run: give a SCRIPT or -m MODULE "
                         "(see traincheck run --help)")
    script = args.target[0]
    if not Path(script).is_file():
        raise UsageError(f"can't open file {script!r}: no such file")
    return [sys.executable, *args.target]


def main(args: argparse.Namespace) -> int:
    plugins = [x.strip() for p in args.plugin for x in p.split(",") if x.strip()]
    known = {"output", "plugin", "invariants", "on_violation", "checker", "checker_cpus",
             "quiet", "module", "target", "_main", "command"}
    options = {k: v for k, v in vars(args).items() if k not in known}
    for f in args.invariants:
        if not Path(f).is_file():
            raise UsageError(f"invariants file {f!r} does not exist")
        load_invariants(f)  # a malformed file is an error here, before the program starts
    config = load_config({
        "output": args.output or os.environ.get("TRAINCHECK_OUTPUT") or default_output_dir(),
        "plugins": plugins or None,
        "invariants": [str(Path(f).resolve()) for f in args.invariants] or None,
        "on_violation": args.on_violation,
        "checker": args.checker,
        "checker_cpus": args.checker_cpus,
        "quiet": args.quiet or None,
        "options": options or None,
    }, env={k: v for k, v in os.environ.items() if k != SESSION_ENV})
    if config.checker_cpus:
        _check_cpus(config.checker_cpus)
    pm, _ = make_plugin_manager(config.plugins or None, autoload=config.autoload)  # fail fast
    output = Path(config.output or default_output_dir()).resolve()
    config = msgspec.structs.replace(config, output=str(output))
    cmd = _program(args)
    output.mkdir(parents=True, exist_ok=True)
    env_before = dict(os.environ)
    export_session_env(config)
    os.environ.pop(FOLLOWED_ENV, None)
    if config.invariants and not config.quiet:
        os.environ[MERGED_SUMMARY_ENV] = "1"  # printed below: no empty per-process lines
    else:
        os.environ.pop(MERGED_SUMMARY_ENV, None)
    follower = _make_follower(config, pm, output)
    try:
        code = _run_child(cmd, follower)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    if not config.quiet:
        from .summary import print_run_summary

        print_run_summary(output, sys.stderr)
        if config.invariants:
            _print_check_summary(output, config.invariants)
    return code


def _print_check_summary(run_dir: Path, invariant_files: list[str]) -> None:
    """The online check's table and diagnoses, merged over every process of the run."""
    from ..check.online import load_all
    from ..report.load import load_run_result, with_invariants
    from ..report.terminal import format_summary

    try:
        invariants = load_all(invariant_files)
        result = with_invariants(load_run_result(run_dir), invariants)
        print(format_summary(result, {i.id: i for i in invariants}), file=sys.stderr)
    except Exception as exc:  # the run is over; a summary problem must not change its status
        print(f"traincheck: could not summarize the online check: {exc}", file=sys.stderr)


class _Launcher:
    """The cross-process follower plus what it needs to stop the program (raise/stop mode)."""

    def __init__(self, follower: LauncherFollower | None, stops: bool) -> None:
        self.follower = follower
        self.stops = stops  # a violation ends the program
        self.child: subprocess.Popen | None = None
        self.stopped_at: float | None = None  # when the program was asked to terminate

    def violated(self, v: Violation) -> None:
        if not self.stops or self.stopped_at is not None or self.child is None:
            return
        print(f"traincheck: stopping training (--on-violation) at step {v.step}, rank "
              f"{v.rank}: cross-process invariant {v.invariant} was violated; terminating "
              "the program (SIGTERM to its process group).", file=sys.stderr, flush=True)
        self.stopped_at = time.monotonic()
        _signal_group(self.child, signal.SIGTERM)


def _make_follower(config, pm, output: Path) -> _Launcher:
    """Follow the run for the invariants no single process can check, if there are any."""
    if not config.invariants:
        return _Launcher(None, False)
    try:
        relations = available_relations(pm)
        cross = cross_process_invariants(load_all(list(config.invariants)), relations)
    except Exception as exc:  # the processes still check the rest
        print(f"traincheck: cross-process invariants are not checked live: {exc}",
              file=sys.stderr)
        return _Launcher(None, False)
    if not cross:
        return _Launcher(None, False)
    launcher = _Launcher(None, config.on_violation in ("raise", "stop"))
    launcher.follower = LauncherFollower(output, cross, relations, quiet=bool(config.quiet),
                                         on_violation=launcher.violated)
    os.environ[FOLLOWED_ENV] = "1"  # the processes leave these invariants to us
    return launcher


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _run_child(cmd: list[str], launcher: _Launcher | None = None) -> int:
    launcher = launcher or _Launcher(None, False)
    # To stop a program (and the workers it started) on a cross-process violation it gets a
    # process group of its own; otherwise it stays in ours and gets terminal signals itself.
    own_group = launcher.stops
    child = subprocess.Popen(cmd, process_group=0 if own_group else None)
    launcher.child = child

    def forward(signum: int, frame: object) -> None:
        if own_group:
            _signal_group(child, signum)
        else:
            child.send_signal(signum)

    forwarded = (signal.SIGTERM, signal.SIGHUP) + ((signal.SIGINT,) if own_group else ())
    old = {s: signal.signal(s, forward) for s in forwarded}
    terminal = _give_terminal(child.pid) if own_group else None
    if launcher.follower is not None:
        launcher.follower.start()
    try:
        code = _wait(child, launcher)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if terminal is not None:
            _set_foreground(*terminal)
        if launcher.follower is not None:
            launcher.follower.finish()
    if launcher.stopped_at is not None:
        print("traincheck: training was stopped because a cross-process invariant was "
              "violated (see the VIOLATION line above)", file=sys.stderr, flush=True)
        return STOP_EXIT_CODE
    return 128 - code if code < 0 else code


def _give_terminal(pgid: int) -> tuple[int, int] | None:
    """Make the program's group the terminal's foreground group, as a shell does, so that
    Ctrl-C, ``input()`` and debuggers work as without traincheck. Returns what to restore."""
    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd) or os.tcgetpgrp(fd) != os.getpgrp():
            return None  # no terminal, or we are not in its foreground ourselves
        before = os.tcgetpgrp(fd)
        _set_foreground(fd, pgid)
        os.killpg(pgid, signal.SIGCONT)  # in case it touched the terminal before the handover
        return fd, before
    except (OSError, ValueError):
        return None


def _set_foreground(fd: int, pgid: int) -> None:
    # A background process changing the foreground group gets SIGTTOU: ignore it meanwhile.
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgid)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, old)


def _wait(child: subprocess.Popen, launcher: _Launcher) -> int:
    while True:
        try:
            return child.wait(timeout=0.5 if launcher.stops else None)
        except subprocess.TimeoutExpired:
            if launcher.stopped_at is not None and \
                    time.monotonic() - launcher.stopped_at > _KILL_AFTER:
                _signal_group(child, signal.SIGKILL)  # it ignored SIGTERM
        except KeyboardInterrupt:
            continue  # the child got SIGINT too; wait for it to finish


# Seconds a stopped program gets to shut down before SIGKILL: more than a launcher such as
# torchrun waits for its workers (30 s), so it can still kill them (they have their own groups).
_KILL_AFTER = 60.0
