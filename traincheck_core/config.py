"""Configuration: defaults < config file < ``TRAINCHECK_*`` environment < command line.

The config file is ``traincheck.toml`` (or the ``[tool.traincheck]`` table of
``pyproject.toml``) in the working directory, or the file named by ``TRAINCHECK_CONFIG``.
Child processes of a run receive the parent's resolved config as JSON in
``TRAINCHECK_SESSION`` and do not read the file again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import msgspec
import tomllib

from .errors import UsageError

__all__ = ["Config", "load_config", "parse_cpus", "SESSION_ENV"]

SESSION_ENV = "TRAINCHECK_SESSION"
OnViolation = Literal["warn", "raise", "stop"]
CheckerPlace = Literal["auto", "process", "inline"]


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything a traced process needs to know; JSON-serializable to reach child processes."""

    output: str | None = None  # run directory; None: a new timestamped folder
    plugins: list[str] = []  # explicitly selected plugins; empty: autoload
    autoload: bool = True
    invariants: list[str] = []  # invariant files to check online
    on_violation: OnViolation = "warn"
    checker: CheckerPlace = "auto"  # where online checking runs (see check.online)
    checker_cpus: str | None = None  # cores the checker process may use ("3", "2-3,6")
    run_id: str | None = None
    quiet: bool = False
    options: dict[str, Any] = {}  # plugin options, by argparse dest


_ENV_FIELDS: dict[str, str] = {
    "TRAINCHECK_OUTPUT": "output",
    "TRAINCHECK_PLUGINS": "plugins",
    "TRAINCHECK_INVARIANTS": "invariants",
    "TRAINCHECK_ON_VIOLATION": "on_violation",
    "TRAINCHECK_CHECKER": "checker",
    "TRAINCHECK_CHECKER_CPUS": "checker_cpus",
    "TRAINCHECK_RUN_ID": "run_id",
    "TRAINCHECK_QUIET": "quiet",
}
_LIST_FIELDS = {"plugins", "invariants"}
_BOOL_FIELDS = {"quiet", "autoload"}


def parse_cpus(spec: str) -> set[int]:
    """CPU numbers from a list like ``taskset -c`` takes: ``"1"``, ``"0,2"``, ``"2-3,6"``."""
    cpus: set[int] = set()
    for part in _split(spec):
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise UsageError(f"checker CPUs {spec!r}: {part!r} is not a CPU number or a "
                             "range like 2-3") from None
        if first < 0 or last < first:
            raise UsageError(f"checker CPUs {spec!r}: {part!r} is not a valid range")
        cpus.update(range(first, last + 1))
    if not cpus:
        raise UsageError(f"checker CPUs {spec!r}: no CPU given")
    return cpus


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _from_file(cwd: Path, env: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    named = env.get("TRAINCHECK_CONFIG")
    candidates = [Path(named)] if named else [cwd / "traincheck.toml", cwd / "pyproject.toml"]
    for path in candidates:
        if not path.is_file():
            if named:
                raise UsageError(f"TRAINCHECK_CONFIG names {path}, which does not exist")
            continue
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: invalid TOML: {exc}") from None
        if path.name == "pyproject.toml":
            data = data.get("tool", {}).get("traincheck", {})
            if not data:
                continue
        return data, str(path)
    return {}, None


def _from_env(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, name in _ENV_FIELDS.items():
        if key in env and env[key] != "":
            raw = env[key]
            if name in _LIST_FIELDS:
                out[name] = _split(raw)
            elif name in _BOOL_FIELDS:
                out[name] = raw.lower() not in ("0", "false", "no")
            else:
                out[name] = raw
    if env.get("TRAINCHECK_DISABLE_PLUGIN_AUTOLOAD", "").lower() not in ("", "0", "false", "no"):
        out["autoload"] = False
    return out


def load_config(overrides: dict[str, Any] | None = None, *, env: dict[str, str] | None = None,
                cwd: str | os.PathLike[str] | None = None) -> Config:
    """Resolve the configuration for this process.

    In a child of a traced run (``TRAINCHECK_SESSION`` set) the parent's config is used as is.
    """
    env = dict(os.environ if env is None else env)
    if env.get(SESSION_ENV):
        try:
            return msgspec.json.decode(env[SESSION_ENV], type=Config)
        except msgspec.DecodeError as exc:
            raise UsageError(f"{SESSION_ENV} holds an invalid config: {exc}") from None
    merged, source = _from_file(Path(cwd or os.getcwd()), env)
    merged.update(_from_env(env))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return msgspec.convert(merged, Config)
    except msgspec.ValidationError as exc:
        where = f" (from {source} or TRAINCHECK_* variables)" if source else ""
        raise UsageError(f"invalid configuration{where}: {exc}") from None
