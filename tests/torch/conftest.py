"""Helpers for the PyTorch adapter tests: run real training scripts under ``traincheck run``
and read back the events of every process of the run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("traincheck_torch")

from traincheck_core import (  # noqa: E402
    CallReturn,
    CallStart,
    Header,
    InstrumentationPlan,
    MetaUpdate,
    VarState,
    iter_run,
)


class FakeSession:
    """What a ``VariableTracker`` needs of a session: a plan, a config with plugin options,
    a clock, and ``emit`` (which keeps the events)."""

    def __init__(self, plan: InstrumentationPlan | None = None, **options: object) -> None:
        self.plan = plan or InstrumentationPlan()
        self.config = type("C", (), {"options": options})()
        self.events: list = []
        self.emit = self.events.append

    @staticmethod
    def now() -> int:
        return 0


@dataclass
class Proc:
    """The events of one traced process, with the meta in force at each event."""

    header: Header
    events: list = field(default_factory=list)  # (event, meta dict)

    def calls(self, api: str) -> list[tuple[CallStart, dict]]:
        return [(e, m) for e, m in self.events if isinstance(e, CallStart) and e.api == api]

    def vars_of_call(self, cid: int) -> dict[str, VarState]:
        return {e.name: e for e, _ in self.events if isinstance(e, VarState) and e.call == cid}

    def states(self) -> list[VarState]:
        return [e for e, _ in self.events if isinstance(e, VarState)]

    def last_meta(self) -> dict:
        return self.events[-1][1] if self.events else {}

    def returns(self) -> dict[int, CallReturn]:
        return {e.id: e for e, _ in self.events if isinstance(e, CallReturn)}


def load_run(out: Path) -> list[Proc]:
    """Every process of a run directory, in file order."""
    procs: dict[int, Proc] = {}
    metas: dict[int, dict] = {}
    for rec in iter_run(out):
        ev = rec.event
        if isinstance(ev, Header):
            procs[rec.source] = Proc(ev)
            metas[rec.source] = {}
            continue
        if isinstance(ev, MetaUpdate):
            metas[rec.source] = {**metas[rec.source], **ev.values}
        procs[rec.source].events.append((ev, metas[rec.source]))
    return list(procs.values())


def traced(runner, script: str, body: str, *args: str, timeout: float = 240) -> list[Proc]:
    """Run ``body`` as ``script`` under ``traincheck run --plugin torch``; its processes."""
    runner.script(script, body)
    res = runner.traincheck("run", "-q", "-o", "out", "--plugin", "torch", script, *args,
                            timeout=timeout)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "failed" not in res.stderr, res.stderr  # no probe switched itself off
    return load_run(runner.path / "out")


class _ModuleRunner:
    """The parts of the shared ``runner`` fixture that :func:`traced` uses, for module-scoped
    fixtures (one traced run shared by several tests that assert on different events)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def script(self, name: str, body: str) -> Path:
        p = self.path / name
        p.write_text(textwrap.dedent(body))
        return p

    def traincheck(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}
        return subprocess.run([sys.executable, "-m", "traincheck_core", *args], cwd=self.path,
                              capture_output=True, text=True, timeout=timeout, env=env)


def clean_env() -> dict[str, str]:
    """This environment without ``TRAINCHECK_*``: a test's traincheck command starts afresh."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}


def tc(cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``traincheck ARGS...`` run in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "traincheck_core", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=clean_env())


def trace_and_infer(d: Path, program: str) -> tuple[Path, Path]:
    """Trace ``program`` (seed 0) fully into ``d/healthy`` and infer ``d/inv.jsonl`` from it;
    ``(d, invariants file)``."""
    res = tc(d, "run", "-q", "--plugin", "torch", "-o", "healthy", program, "--seed", "0")
    assert res.returncode == 0, res.stderr
    res = tc(d, "infer", "healthy", "-o", "inv.jsonl")
    assert res.returncode == 0, res.stderr
    return d, d / "inv.jsonl"


def traced_once(tmp_path_factory, script: str, body: str, *args: str) -> list[Proc]:
    """:func:`traced` in a fresh folder, for module-scoped fixtures."""
    return traced(_ModuleRunner(tmp_path_factory.mktemp(script.replace(".", "_"))), script,
                  body, *args)
