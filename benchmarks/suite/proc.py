"""Run one command with a timeout and record what happened; never raise."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import msgspec


class CmdResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    cmd: list[str]
    status: str  # ok | failed | timeout | error
    returncode: int | None = None
    seconds: float = 0.0
    log: str = ""  # file with the command's stdout+stderr
    tail: str = ""  # last lines of output, for the report when something went wrong
    stdout: str = ""  # kept only when asked (JSON output of traincheck check)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def run(cmd: list[str], log: Path, *, cwd: Path | None = None, timeout: float = 300,
        ok_codes: tuple[int, ...] = (0,), keep_stdout: bool = False,
        env: dict[str, str] | None = None) -> CmdResult:
    """Run ``cmd``; stdout+stderr go to ``log`` (stdout separately kept when asked).

    A command that exits with a code outside ``ok_codes`` is ``failed``, one that runs past
    ``timeout`` is killed (its whole process group: DDP ranks, DataLoader workers) and
    ``timeout``, one that cannot start is ``error``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        with open(log, "wb") as errf:
            proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE if keep_stdout else errf,
                                    stderr=errf, start_new_session=True,
                                    env={**os.environ, **(env or {})})
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.communicate()
                return CmdResult(cmd=cmd, status="timeout", seconds=time.perf_counter() - t0,
                                 log=str(log), tail=_tail(log))
    except OSError as e:
        return CmdResult(cmd=cmd, status="error", seconds=time.perf_counter() - t0, log=str(log),
                         tail=f"{type(e).__name__}: {e}")
    secs = time.perf_counter() - t0
    status = "ok" if proc.returncode in ok_codes else "failed"
    return CmdResult(cmd=cmd, status=status, returncode=proc.returncode, seconds=secs,
                     log=str(log), tail="" if status == "ok" else _tail(log),
                     stdout=(out or b"").decode(errors="replace") if keep_stdout else "")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _tail(log: Path, lines: int = 12) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
