"""A short description of the machine and software the suite ran on."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def describe(repo: Path) -> dict[str, str]:
    return {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "traincheck": _version("traincheck_core"),
        "commit": _git(repo, "rev-parse", "--short", "HEAD"),
        "dirty": "yes" if _git(repo, "status", "--porcelain", "--", "traincheck_core",
                               "plugins") else "no",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError):
        pass
    return "unknown"


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001 - any import failure just means "not available"
        return "not installed"
    return str(getattr(mod, "__version__", "?"))


def _git(repo: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()
