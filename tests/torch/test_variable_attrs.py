"""Attributes of a tracked tensor: tensor-parallel marks are kept whether they are set on the
tensor (Megatron-style) or defined by its class; plain tensors carry none."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

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
