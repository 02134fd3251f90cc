"""End to end on real JAX/Optax/Flax programs: trace a healthy run, infer invariants, catch each
JAX bug of the benchmark corpus online and offline at its trigger step, and stay silent on
healthy reruns (same seed and another seed). The core's templates and checker are the ones
PyTorch uses; nothing here is JAX-specific but the programs."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.jax

BUGS = Path(__file__).resolve().parents[2] / "benchmarks" / "bugs"

# bug -> (relation that must fire, words its message must contain)
EXPECTED = {
    "jax_prng_key_reuse": ("APIArgFresh", "got the same `dropout_key` as in the previous step"),
    "jax_update_not_applied": ("EventContain", "params/w1"),
    "jax_grad_wrong_argument": ("EventContain", "opt_state/0/mu/head/b"),
    "jax_eval_dropout_active": ("APIArgValue", "Dropout.__call__()` at step 4 got `active` = True"),
}


def violations(run_dir: Path) -> list[dict]:
    path = run_dir / "violations.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def offline(runner, inv: str, run_dir: str) -> tuple[int, dict]:
    res = runner.traincheck("check", "--json", "-i", inv, run_dir)
    assert res.returncode in (0, 1), res.stderr
    return res.returncode, json.loads(res.stdout)


@pytest.mark.parametrize("bug", sorted(EXPECTED))
def test_bug_detected_at_trigger_and_healthy_reruns_clean(runner, bug: str) -> None:
    d = BUGS / bug
    trigger = int(re.search(r"^trigger_step\s*=\s*(\d+)", (d / "bug.toml").read_text(),
                            re.M).group(1))
    relation, words = EXPECTED[bug]
    healthy, buggy = str(d / "healthy.py"), str(d / "buggy.py")

    ref = runner.traincheck("run", "-q", "--plugin", "jax", "-o", "ref", healthy)
    assert ref.returncode == 0, ref.stderr
    inf = runner.traincheck("infer", "-q", "-j", "1", "-o", "inv.jsonl", "ref")
    assert inf.returncode == 0, inf.stderr

    online = ("run", "-q", "--plugin", "jax", "-i", "inv.jsonl", "-o")
    jobs = {"buggy": (*online, "buggy", buggy),
            "same_seed": (*online, "same_seed", healthy, "--seed", "0"),
            "other_seed": (*online, "other_seed", healthy, "--seed", "1")}
    with ThreadPoolExecutor(3) as pool:
        done = dict(zip(jobs, pool.map(lambda a: runner.traincheck(*a), jobs.values()),
                        strict=True))
    for name, res in done.items():
        assert res.returncode == 0, (name, res.stderr)  # warn mode: training goes on

    # online: the expected invariant fires, within one step of the trigger
    found = [v for v in violations(runner.path / "buggy") if v["relation"] == relation
             and words in v["message"]]
    assert found, [v["message"] for v in violations(runner.path / "buggy")]
    first = min(v["step"] for v in found)
    assert abs(first - trigger) <= 1, (first, trigger)

    # offline, from the same trace: exit 1 and the same first step
    code, res = offline(runner, "inv.jsonl", "buggy")
    assert code == 1
    steps = [o["first_step"] for o in res["outcomes"]
             if o["status"] == "violated" and o["relation"] == relation]
    assert steps and abs(min(steps) - trigger) <= 1

    # healthy reruns: not a single violation, online or offline
    for rerun in ("same_seed", "other_seed"):
        assert violations(runner.path / rerun) == [], rerun
        code, res = offline(runner, "inv.jsonl", rerun)
        assert code == 0, [o["text"] for o in res["outcomes"] if o["status"] == "violated"]
        assert any(o["status"] == "held" for o in res["outcomes"])
