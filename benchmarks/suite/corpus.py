"""Discover the benchmark corpus: bug pairs under ``bugs/`` and healthy programs under
``healthy/``, with each pair's ``bug.toml`` metadata."""

from __future__ import annotations

from pathlib import Path

import msgspec

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

BENCH_ROOT = Path(__file__).resolve().parent.parent
BUG_FILES = ("buggy.py", "healthy.py", "README.md", "bug.toml")
REQUIRED_KEYS = ("name", "category", "trigger_step", "source")


class BugCase(msgspec.Struct, kw_only=True):
    name: str
    dir: str
    category: str
    trigger_step: int
    source: str
    expected_relation: list[str] = []
    framework: str = "torch"  # the plugin that traces it
    kind: str = "user-code"
    ranks: int = 1
    default_steps: int = 40


class HealthyProgram(msgspec.Struct, kw_only=True):
    name: str
    path: str
    framework: str = "torch"


class CorpusError(Exception):
    """A benchmark directory is incomplete or its bug.toml is malformed."""


def load_bug(d: Path) -> BugCase:
    missing = [f for f in BUG_FILES if not (d / f).is_file()]
    if missing:
        raise CorpusError(f"{d}: missing {', '.join(missing)}")
    try:
        meta = tomllib.loads((d / "bug.toml").read_text())
    except tomllib.TOMLDecodeError as e:
        raise CorpusError(f"{d / 'bug.toml'}: {e}") from None
    absent = [k for k in REQUIRED_KEYS if k not in meta]
    if absent:
        raise CorpusError(f"{d / 'bug.toml'}: missing keys {', '.join(absent)}")
    if meta["name"] != d.name:
        raise CorpusError(f"{d / 'bug.toml'}: name {meta['name']!r} != directory {d.name!r}")
    fields = {k: meta[k] for k in BugCase.__struct_fields__ if k in meta and k != "dir"}
    try:
        return msgspec.convert({**fields, "dir": str(d)}, BugCase)
    except msgspec.ValidationError as e:
        raise CorpusError(f"{d / 'bug.toml'}: {e}") from None


def discover_bugs(root: Path = BENCH_ROOT, only: list[str] | None = None) -> list[BugCase]:
    dirs = sorted(p for p in (root / "bugs").iterdir() if p.is_dir() and p.name[0] not in "._")
    if only:
        unknown = set(only) - {d.name for d in dirs}
        if unknown:
            raise CorpusError(f"unknown bug(s): {', '.join(sorted(unknown))}")
        dirs = [d for d in dirs if d.name in only]
    return [load_bug(d) for d in dirs]


def discover_healthy(root: Path = BENCH_ROOT,
                     only: list[str] | None = None) -> list[HealthyProgram]:
    files = sorted(p for p in (root / "healthy").glob("*.py") if not p.name.startswith("_"))
    progs = [HealthyProgram(name=p.stem, path=str(p),
                            framework="jax" if p.stem.startswith("jax_") else "torch")
             for p in files]
    if only:
        progs = [p for p in progs if p.name in only]
    return progs
