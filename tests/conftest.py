"""Shared fixtures: run traincheck and Python programs in subprocesses, as users do."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}
    env.update(extra)
    return env


class Runner:
    """Write scripts into a temporary folder and run ``traincheck``/``python`` on them."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def script(self, name: str, body: str) -> Path:
        p = self.path / name
        p.write_text(textwrap.dedent(body))
        return p

    def run(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=self.path, capture_output=True, text=True,
                              timeout=timeout, env=_clean_env(**(env or {})), input=input)

    def traincheck(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "traincheck_core", *args, **kw)

    def python(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, *args, **kw)


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)
