"""Invariant inference: reference traces in, an invariants file out (``traincheck infer``)."""

from .engine import InferResult, RunSpec, find_runs, infer_paths, infer_runs

__all__ = ["InferResult", "RunSpec", "find_runs", "infer_paths", "infer_runs"]
