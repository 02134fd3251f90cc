"""Attributes of a tracked tensor: tensor-parallel marks are kept whether they are set on the
tensor (Megatron-style) or defined by its class; plain tensors carry none."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from conftest import FakeSession  # noqa: E402
from traincheck_torch.variables import ALL, tensor_attrs  # noqa: E402

pytestmark = pytest.mark.torch


def test_plain_parameter_has_no_parallel_marks():
    attrs = tensor_attrs(torch.nn.Parameter(torch.ones(3)), None, ALL, True)
    assert set(attrs) == {"data", "grad", "requires_grad", "dtype", "shape", "device",
                          "is_param"}


def test_marks_set_on_a_parameter_are_kept():
    p = torch.nn.Parameter(torch.ones(3))
    tensor_attrs(p, None, ALL, True)  # seen once unmarked
    p.tensor_model_parallel, p.partition_dim = True, 0
    attrs = tensor_attrs(p, None, ALL, True)
    assert attrs["tensor_model_parallel"] is True and attrs["partition_dim"] == 0


def test_marks_defined_by_the_class_are_kept():
    class SequenceParallel(torch.Tensor):
        sequence_parallel = True

    t = torch.ones(2).as_subclass(SequenceParallel)
    for _ in range(2):  # also once the class is known
        assert tensor_attrs(t, None, ALL, False)["sequence_parallel"] is True


def test_a_state_is_emitted_when_any_attribute_of_the_same_tensor_changes():
    from traincheck_torch.variables import DATA, VariableTracker

    s = FakeSession()
    v = VariableTracker(s)  # type: ignore[arg-type]
    p = torch.nn.Parameter(torch.ones(3))
    seen = lambda: [e.attrs for e in s.events]  # noqa: E731

    def look(what=ALL):
        v.observe([("w", p, True)], what, 1)

    look()
    look()  # nothing changed: no new state
    assert len(seen()) == 1
    p.requires_grad_(False)  # a freeze, on the same tensor object
    look(DATA)
    assert len(seen()) == 2 and seen()[-1]["requires_grad"] is False
    with torch.no_grad():
        p.mul_(2)
    look(DATA)
    assert seen()[-1]["data"] != seen()[-2]["data"]
    p.data = p.data.double()  # dtype changed under the same Parameter
    look(DATA)
    assert seen()[-1]["dtype"] == "float64"
    p.partition_dim = 0  # a tensor-parallel mark set later
    look(DATA)
    assert seen()[-1]["partition_dim"] == 0 and len(seen()) == 5


def test_buffers_follow_changes_of_the_module_tree():
    from torch.nn.modules import module as nn_module
    from traincheck_torch.variables import VariableTracker

    v = VariableTracker(FakeSession())  # type: ignore[arg-type]
    handles = [nn_module.register_module_module_registration_hook(v.structure_changed),
               nn_module.register_module_buffer_registration_hook(v.structure_changed)]
    v.structure = 0
    try:
        m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
        names = lambda: [n for n, _, _ in v.buffer_vars(m, "model")]  # noqa: E731
        want = lambda: [f"model.{n}" for n, _ in m.named_buffers()]  # noqa: E731
        assert names() == want() and len(names()) == 3
        m.append(torch.nn.BatchNorm1d(2))  # a module added later
        assert names() == want() and len(names()) == 6
        m[1].register_buffer("extra", torch.zeros(1))  # a buffer registered later
        assert names() == want() and len(names()) == 7
        m[1].running_mean = torch.ones(2)  # a buffer replaced: the new tensor is observed
        assert next(b for n, b, _ in v.buffer_vars(m, "model")
                    if n == "model.1.running_mean") is m[1].running_mean
    finally:
        for h in handles:
            h.remove()


def test_the_buffer_index_does_not_keep_a_dropped_model_alive():
    import gc
    import weakref

    from traincheck_torch.variables import VariableTracker

    v = VariableTracker(FakeSession())  # type: ignore[arg-type]
    v.structure = 0
    m = torch.nn.Sequential(torch.nn.BatchNorm1d(2))
    list(v.buffer_vars(m, "model"))
    gone = weakref.ref(m[0])
    del m
    gc.collect()
    assert gone() is None and not v._buffer_slots
