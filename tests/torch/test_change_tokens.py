"""Change tokens: where the deployed invariants only ask whether an optimizer state or a buffer
changed, torch's count of in-place writes answers instead of a hash, once a variable has shown
that its writes are counted; content that changes behind the counter keeps being hashed, and
parameters and gradients are always hashed."""

from __future__ import annotations

import pytest
import torch
from conftest import FakeSession
from traincheck_torch.fingerprint import fingerprint
from traincheck_torch.variables import ALL, DATA, GRAD, VariableTracker, Writes

from traincheck_core import InstrumentationPlan, VarState
from traincheck_core.session import ContentRule

pytestmark = pytest.mark.torch

HEX = set("0123456789abcdef")


def is_fp(value: object) -> bool:
    return isinstance(value, str) and len(value) == 16 and set(value) <= HEX


def is_token(value: object) -> bool:
    return isinstance(value, str) and value.startswith("w") and not is_fp(value)


def proven(w: Writes, t: torch.Tensor) -> list:
    """Values over PROOF + 1 counted changes (in-place adds)."""
    out = [w.value(t)]
    for _ in range(Writes.PROOF):
        t.add_(1)
        out.append(w.value(t))
    return out


def test_counted_writes_become_tokens_after_the_proof_and_only_at_a_change():
    w, t = Writes(), torch.zeros(5)
    values = proven(w, t)
    assert all(is_fp(v) for v in values[:-1]) and len(set(values)) == len(values)
    assert is_token(values[-1])  # the proof ends at a change: the new value differs
    assert w.value(t) == values[-1]  # nothing written: the same token, no hash needed
    t.mul_(2)
    changed = w.value(t)
    assert is_token(changed) and changed != values[-1]
    assert w.value(t.clone()) != changed  # another tensor object is a write too


def test_uncounted_writes_keep_a_variable_hashed():
    w, t = Writes(), torch.zeros(5)
    first = w.value(t)
    t.data.add_(1)  # through .data: the tensor's own counter does not move
    second = w.value(t)
    assert second == fingerprint(t) != first
    for _ in range(2 * Writes.PROOF):  # later counted writes cannot make it trusted again
        t.add_(1)
        assert w.value(t) == fingerprint(t)
    assert w.value(t) == fingerprint(t)  # and an unchanged look gives the same value


def test_views_share_their_base_count_and_stay_hashed():
    flat = torch.zeros(8)  # optimizer state kept as views into one flat buffer
    a, b = flat[:4], flat[4:]
    wa, wb = Writes(), Writes()
    seen_b = {wb.value(b)}
    for _ in range(2 * Writes.PROOF):
        a.add_(1)  # counted for b too (one counter for the whole buffer)
        assert is_fp(wa.value(a))
        seen_b.add(wb.value(b))
    assert seen_b == {fingerprint(b)}  # b never changed, and never looked changed


def test_batch_norm_statistics_change_behind_the_counter_and_stay_hashed():
    bn = torch.nn.BatchNorm1d(3)
    w = Writes()
    seen = [w.value(bn.running_mean)]
    for _ in range(3):
        bn(torch.randn(8, 3))
        seen.append(w.value(bn.running_mean))
    assert all(is_fp(v) for v in seen) and len(set(seen)) == len(seen)


def test_a_counted_write_of_the_same_values_during_the_proof_keeps_it_hashed():
    w, t = Writes(), torch.ones(4)
    first = w.value(t)
    t.mul_(1.0)  # counted, but nothing changed (what lr=0 does to parameters)
    assert w.value(t) == first
    for _ in range(2 * Writes.PROOF):
        t.add_(1)
        assert w.value(t) == fingerprint(t)


PLAN = InstrumentationPlan(full=False, variables=["*"], content=[
    ContentRule(attr="data", changes=True), ContentRule(attr="grad", changes=True)])


def _train(session: FakeSession, steps: int = 5) -> dict[str, list]:
    """A real Adam loop observed as the adapter does; each variable's data/grad values."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    vt = VariableTracker(session, session.plan)  # type: ignore[arg-type]
    vt.track_model(lin, "model")
    names = {id(p): n for n, p in lin.named_parameters()}
    for _ in range(steps):
        opt.zero_grad()
        lin(torch.randn(8, 4)).square().mean().backward()
        vt.observe(((f"model.{names[id(p)]}", p, True) for p in lin.parameters()), GRAD, 1)
        opt.step()
        vt.observe(((f"model.{names[id(p)]}", p, True) for p in lin.parameters()), DATA, 2)
        vt.observe(((f"opt.{names[id(p)]}.{k}", v, False) for p, st in opt.state.items()
                    for k, v in st.items()), ALL, 2)
    out: dict[str, list] = {}
    for e in session.events:
        if isinstance(e, VarState):
            out.setdefault(e.name, []).append((e.attrs["data"], e.attrs["grad"]))
    return out


def test_tracker_hashes_parameters_and_gradients_and_tokens_the_rest_unless_exact():
    got = _train(FakeSession(PLAN))
    # parameters and gradients are always hashed (an update that changes nothing, an
    # all-zero gradient at every step must be seen) ...
    assert all(is_fp(d) and (g is None or is_fp(g)) for d, g in got["model.weight"])
    # ... the optimizer state turns to tokens once proven
    assert is_token(got["opt.weight.exp_avg"][-1][0])
    assert is_token(got["opt.weight.step"][-1][0])
    # every state still differs from the one before (each step writes all of them)
    for name, values in got.items():
        assert all(a != b for a, b in zip(values, values[1:], strict=False)), name
    exact = _train(FakeSession(PLAN, torch_exact_content=True))
    assert not any(is_token(v) for values in exact.values() for pair in values for v in pair)
    assert exact.keys() == got.keys()


STEP_END_GRADS = InstrumentationPlan(full=False, variables=["*"], content=[
    ContentRule(attr="data"), ContentRule(attr="grad", step_end=True)])


@pytest.mark.parametrize("nesterov", [False, True])
def test_step_end_gradients_are_read_as_the_step_begins_unless_it_writes_them(nesterov):
    """Gradients owed at the step's end are hashed when the optimizer step begins (what a
    fully traced run reads last before the step end); SGD with Nesterov momentum (its
    multi-tensor version) adds to the gradients in place, a write torch counts, so they are
    read again at the end."""
    session = FakeSession(STEP_END_GRADS)
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 64)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9, nesterov=nesterov,
                          foreach=True)
    vt = VariableTracker(session, session.plan)  # type: ignore[arg-type]
    vt.track_model(lin, "model")
    vt.track_optimizer(opt)
    params = [("model.weight", lin.weight, True), ("model.bias", lin.bias, True)]
    for _ in range(3):
        opt.zero_grad()
        lin(torch.randn(8, 64)).square().mean().backward()
        vt.observe(params, GRAD, 1)  # after backward: owed at the step's end
        before = {n: fingerprint(p.grad) for n, p, _ in params}
        vt.hash_grads_early()
        assert len(vt._early) == 2
        opt.step()
        after = {n: fingerprint(p.grad) for n, p, _ in params}
        assert (before != after) == nesterov
        session.events.clear()
        vt.observe_optimizer(opt, 2, at_end=True)
        assert not vt._early  # nothing read early outlives the step
        last = {e.name: e.attrs["grad"] for e in session.events
                if isinstance(e, VarState) and e.name in after}
        assert last == after  # the content at the step's end
