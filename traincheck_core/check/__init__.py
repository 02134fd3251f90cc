"""Checking runs against invariants: one engine for online (in-process) and offline use."""

from .engine import CheckEngine
from .offline import check_run, check_runs
from .plan import available_relations, compile_plan
from .result import CheckResult, InvariantOutcome, merge_results
from .sinks import ViolationLog, read_violations, violation_line

__all__ = ["CheckEngine", "CheckResult", "InvariantOutcome", "ViolationLog", "available_relations",
           "check_run", "check_runs", "compile_plan", "merge_results", "read_violations",
           "violation_line"]
