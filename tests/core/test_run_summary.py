"""The run summary says why a trace has no end record: its process is still running on this
host (a helper exiting after the main process), or it was killed."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys

from traincheck_core import events as ev
from traincheck_core.cli.summary import print_run_summary
from traincheck_core.trace import TraceWriter


def _unfinished_trace(path, pid: int, host: str) -> None:
    w = TraceWriter(path, interval=0)
    w.emit(ev.Header(schema=ev.SCHEMA_VERSION, run_id="r", host=host, pid=pid, ppid=1, rank=None,
                     world_size=None, local_rank=None, python="3.11", traincheck="0",
                     frameworks={}, plugins={}, argv=[], started=0.0, t=0))
    w.flush()  # and never closed: no Footer


def _states(run) -> dict[int, str]:
    out = io.StringIO()
    print_run_summary(run, out)
    return {int(line.split("pid ")[1].split(",")[0]): line.rsplit(", ", 1)[1]
            for line in out.getvalue().splitlines() if ".tctrace:" in line}


def test_an_unfinished_trace_says_whether_its_process_still_runs(tmp_path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    here = socket.gethostname()
    _unfinished_trace(tmp_path / "trace-a.tctrace", os.getpid(), here)
    _unfinished_trace(tmp_path / "trace-b.tctrace", dead_pid, here)
    _unfinished_trace(tmp_path / "trace-c.tctrace", os.getpid() + 1, "another-host")
    states = _states(tmp_path)
    assert states[os.getpid()] == "no end record yet (the process is still running)"
    assert states[dead_pid] == "no end record (process killed?)"
    assert states[os.getpid() + 1] == "no end record (process killed?)"  # not ours to tell
