"""Development sessions. `nox -s tests` is the full test run CI uses.

Every session installs with ``-c constraints.txt`` so torch always resolves to the tested CPU
build (an unpinned torch pulls a multi-GB CUDA build).
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
C = ("-c", str(ROOT / "constraints.txt"))
PLUGINS = {name: ROOT / "plugins" / f"traincheck_{name}" for name in ("torch", "jax")}
nox.options.sessions = ["core", "tests", "lint"]
nox.options.default_venv_backend = "venv"


def _have(plugin: str) -> bool:
    return (PLUGINS[plugin] / "pyproject.toml").exists()


def _install_core(session: nox.Session) -> None:
    session.install(*C, "-e", ".[test]")


def _install_torch(session: nox.Session) -> None:
    session.install(*C, "torch==2.13.0")
    if _have("torch"):
        session.install(*C, "-e", str(PLUGINS["torch"]))


def _install_jax(session: nox.Session) -> None:
    if _have("jax"):
        session.install(*C, "-e", f"{PLUGINS['jax']}[test]")


def _pytest(session: nox.Session, *paths: str) -> None:
    args = session.posargs or ["-q", "-ra", *paths]
    session.run("python", "-m", "pytest", *args, env={"DS_ACCELERATOR": "cpu"})


@nox.session
def core(session: nox.Session) -> None:
    """The core alone, with no deep-learning framework installed."""
    _install_core(session)
    _pytest(session, "tests/core")


@nox.session
def torch(session: nox.Session) -> None:
    """The PyTorch adapter and the end-to-end tests that need it."""
    _install_core(session)
    _install_torch(session)
    _pytest(session, "tests/torch")


@nox.session
def jax(session: nox.Session) -> None:
    """The JAX adapter (JAX, Optax, Flax on the CPU)."""
    _install_core(session)
    _install_jax(session)
    _pytest(session, "tests/jax")


@nox.session
def tests(session: nox.Session) -> None:
    """The full test run: core tests with no framework, then everything with every framework."""
    _install_core(session)
    _pytest(session, "tests/core")
    _install_torch(session)
    _install_jax(session)
    _pytest(session, "tests", "--ignore=tests/core")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole repository."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over the core package."""
    session.install(*C, "-e", ".", "mypy")
    session.run("mypy", "traincheck_core")


@nox.session
def demo(session: nox.Session) -> None:
    """The quick-start demo: trace a real training job end to end."""
    _install_core(session)
    _install_torch(session)
    session.run("bash", str(ROOT / "examples" / "demo" / "demo.sh"),
                env={"PYTHON": "python", "DEMO_DIR": os.environ.get("DEMO_DIR", "demo-output")})


@nox.session
def bench(session: nox.Session) -> None:
    """The silent-bug benchmark suite (benchmarks/suite): every bug pair and healthy program,
    results table under benchmarks/results/. Extra arguments go to run_suite.py."""
    _install_core(session)
    _install_torch(session)
    if _have("jax"):
        session.install(*C, "-e", f"{PLUGINS['jax']}[jax]")
    session.run("python", str(ROOT / "benchmarks" / "suite" / "run_suite.py"), "-j", "2",
                *session.posargs, env={"DS_ACCELERATOR": "cpu"})
