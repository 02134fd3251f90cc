"""Fingerprints cover every element and its position; equal tensors fingerprint equally."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from traincheck_torch.fingerprint import fingerprint, fingerprint_on_device  # noqa: E402

pytestmark = pytest.mark.torch

SHAPES = [(1,), (7,), (3, 5), (2, 3, 4), (64, 33)]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.int64,
          torch.int8, torch.bool]


def _rand(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g).to(dtype)
    return torch.randint(-100, 100, shape, generator=g).to(dtype)


def _bump(t, i):
    flat = t.clone().reshape(-1)
    if flat.dtype == torch.bool:
        flat[i] = ~flat[i]
    else:
        flat[i] = flat[i] + 1
    return flat.reshape(t.shape)


@pytest.mark.parametrize("fp", [fingerprint, fingerprint_on_device], ids=["cpu", "device"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_any_single_element_change_changes_fingerprint(fp, dtype, shape):
    t = _rand(shape, dtype)
    base = fp(t)
    for i in range(t.numel()):  # every position, not just the first row
        assert fp(_bump(t, i)) != base, f"element {i} of {shape} {dtype} not covered"


@pytest.mark.parametrize("fp", [fingerprint, fingerprint_on_device], ids=["cpu", "device"])
def test_position_matters_and_equal_content_equal_fingerprint(fp):
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert fp(t) == fp(t.clone()) == fp(t.clone().requires_grad_())
    assert fp(t) != fp(t.flip(0))  # same multiset of elements, other positions
    assert fp(t) != fp(t.roll(1))
    assert fp(t.t()) == fp(t.t().contiguous())  # logical order, not memory order
    assert fp(torch.zeros(4)) != fp(torch.zeros(5))


def test_last_element_of_large_tensor():
    t = torch.randn(1000, 1000)
    base = fingerprint(t)
    t[-1, -1] += 1
    assert fingerprint(t) != base


def test_fingerprint_does_not_touch_the_tensor():
    t = torch.randn(10, requires_grad=True)
    before = t.detach().clone()
    v = t._version
    fingerprint(t)
    fingerprint_on_device(t)
    assert torch.equal(t.detach(), before) and t._version == v and t.grad is None
