"""``--on-violation raise`` on a JAX program: the violation reaches the user's loop as a
``ViolationError`` (it must not be mistaken for a failing probe and swallowed), and the loop
stops right after the step that shows it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.jax

BUG = Path(__file__).resolve().parents[2] / "benchmarks" / "bugs" / "jax_update_not_applied"


def test_raise_mode_stops_a_jax_loop_with_the_violation(runner) -> None:
    ref = runner.traincheck("run", "-q", "--plugin", "jax", "-o", "ref", str(BUG / "healthy.py"))
    assert ref.returncode == 0, ref.stderr
    inf = runner.traincheck("infer", "-q", "-j", "1", "-o", "inv.jsonl", "ref")
    assert inf.returncode == 0, inf.stderr

    res = runner.traincheck("run", "-q", "--plugin", "jax", "-i", "inv.jsonl",
                            "--on-violation", "raise", "-o", "bug", str(BUG / "buggy.py"))
    assert res.returncode != 0, res.stdout
    raised = [x for x in res.stderr.splitlines()
              if x.startswith("traincheck_core.errors.ViolationError")]
    assert raised, res.stderr  # the exception reached the program, named in its traceback
    assert "failed and is now off" not in res.stderr  # not swallowed as a probe failure
    steps = [int(s) for s in re.findall(r"^step (\d+) loss", res.stdout, re.M)]
    assert len(steps) < 8  # the loop of 8 steps did not finish
    assert max(steps, default=-1) <= 1  # trigger step 0: stopped by the next step
