"""Cross-rank invariants checked live by ``traincheck run``: the launcher follows the run
directory for the invariants no single rank can check (replicas equal across ranks), while
each rank's in-process checker keeps the others. Two ranks under torchrun, gloo, CPU."""

from __future__ import annotations

import json

import pytest
from test_checking_e2e import AT, _torchrun, read_violations, statements, tc, violation_lines

pytestmark = [pytest.mark.torch, pytest.mark.multiproc]

STOP_EXIT_CODE = 3


@pytest.fixture(scope="module")
def ddp_inv(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp_online")
    res = tc(d, "run", "-q", "--plugin", "torch", "-o", "healthy", *_torchrun("--seed", "0"))
    assert res.returncode == 0, res.stderr
    assert tc(d, "infer", "healthy", "-o", "inv.jsonl").returncode == 0
    return d, d / "inv.jsonl"


def _consistency_ids(inv) -> set[str]:
    return {i for i, line in statements(inv).items()
            if json.loads(line)["relation"] == "Consistency"}


def test_launcher_reports_replica_divergence_live_once(ddp_inv):
    d, inv = ddp_inv
    cons = _consistency_ids(inv)
    assert cons  # the healthy run yields "replicas are equal across ranks" invariants
    bug = tc(d, "run", "--plugin", "torch", "-o", "bug", "--invariants", str(inv),
             *_torchrun("--seed", "1", "--bug", "diverge", "--at", str(AT), "--steps", "6"))
    assert bug.returncode == 0, bug.stderr  # warn mode: training completes
    lines = [x for x in violation_lines(bug.stderr) if x[2] in cons]
    assert lines, bug.stderr
    step, rank, _, rest = lines[0]
    assert step == AT and rank is not None
    assert "model.0.weight" in rest and "model.2.weight" not in rest
    # reported once (by the launcher, not by a rank too), and logged once in the run dir
    assert len(lines) == len({x[2] for x in lines})
    logged = [v for v in read_violations(d / "bug") if v["invariant"] in cons]
    assert logged and min(v["step"] for v in logged) == AT
    # stamped when the launcher reported it (the suite's report latency comes from this)
    assert all(v["reported_t"] >= v["t"] > 0 for v in logged)
    # offline `check` still checks everything and agrees
    chk = tc(d, "check", "bug", "-i", str(inv), "--json")
    assert chk.returncode == 1
    out = {o["id"]: o for o in json.loads(chk.stdout)["outcomes"]}
    assert min(out[i]["first_step"] for i in cons if out[i]["status"] == "violated") == AT
    # a healthy rerun with another seed: nothing from the launcher either
    ok = tc(d, "run", "--plugin", "torch", "-o", "ok", "--invariants", str(inv),
            *_torchrun("--seed", "1"))
    assert ok.returncode == 0 and violation_lines(ok.stderr) == [], ok.stderr


@pytest.mark.parametrize("mode", ["stop", "raise"])
def test_on_violation_stop_ends_the_ddp_run_early(ddp_inv, mode):
    """No rank can raise a cross-rank violation into its loop: the launcher ends the job."""
    d, inv = ddp_inv
    # Far more steps than it takes to stop (traces reach the disk every 0.5 s, the launcher
    # then needs one poll): a working stop ends the run after a second or two on any machine.
    steps = 5000
    res = tc(d, "run", "--plugin", "torch", "-o", f"stopped-{mode}", "--invariants", str(inv),
             "--on-violation", mode,
             *_torchrun("--seed", "1", "--bug", "diverge", "--at", str(AT),
                        "--steps", str(steps)))
    assert res.returncode == STOP_EXIT_CODE, res.stderr
    cons = _consistency_ids(inv)
    first = [x for x in violation_lines(res.stderr) if x[2] in cons][0]
    assert first[0] == AT
    assert f"invariant {first[2]} was violated" in res.stderr
    assert f"iteration {steps - 1}" not in res.stdout  # it did not train to the end
