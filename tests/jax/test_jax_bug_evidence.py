"""Each JAX bug pair: the buggy run's trace shows the evidence a checker needs, the healthy
run's does not. (Inference/checking end to end is in test_jax_e2e.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from tracehelp import Trace

pytestmark = pytest.mark.jax

BUGS = Path(__file__).resolve().parents[2] / "benchmarks" / "bugs"


def traced(runner, bug: str, which: str) -> Trace:
    res = runner.traincheck("run", "--plugin", "jax", "-o", which, str(BUGS / bug / f"{which}.py"))
    assert res.returncode == 0, res.stderr
    return Trace(runner.path / which)


def test_prng_key_reuse(runner) -> None:
    for which, distinct in (("healthy", 8), ("buggy", 1)):
        t = traced(runner, "jax_prng_key_reuse", which)
        keys = [c.args["dropout_key"].fp for c, _ in t.calls_of("jax.jit.train_step")]
        assert len(keys) == 8 and len(set(keys)) == distinct, which


def test_update_not_applied(runner) -> None:
    for which, changed in (("healthy", 8), ("buggy", 0)):
        t = traced(runner, "jax_update_not_applied", which)
        ch = t.changes_by_api()
        assert sum(ch["params/w1"].values()) == changed, which
        assert ch["opt_state/1/0/mu/w1"]["jax.jit.train_step"] == 8  # the optimizer did run
        assert t.calls_of("jax.jit.train_step")[-1][1]["step"] == 7


def test_grad_wrong_argument(runner) -> None:
    for which, head_changes in (("healthy", 8), ("buggy", 0)):
        t = traced(runner, "jax_grad_wrong_argument", which)
        ch = t.changes_by_api()
        assert ch["params/body/w"]["jax.jit.train_step"] == 8, which
        assert sum(ch["params/head/w"].values()) == head_changes, which


def test_eval_dropout_active(runner) -> None:
    for which, active in (("healthy", False), ("buggy", True)):
        t = traced(runner, "jax_eval_dropout_active", which)
        evals = t.calls_of("jax.jit.eval_step")
        assert [m["stage"] for _, m in evals] == ["eval", "eval"]
        ids = {c.id for c, _ in evals}
        drops = [c for c, m in t.calls_of("flax.linen.Dropout.__call__") if c.parent in ids]
        assert len(drops) == 2 and {c.args["active"].v for c in drops} == {active}, which
