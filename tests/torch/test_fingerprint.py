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


def _layouts(t):
    """The same content in the layouts a training run meets: plain, requiring grad, a
    Parameter, transposed, sliced, with the negative bit, and odd strides of size-1 dims."""
    yield t
    if t.dtype.is_floating_point:
        yield t.clone().requires_grad_()
        yield torch.nn.Parameter(t.clone())
        yield torch._neg_view(t)
    if t.dim() >= 2:
        yield t.transpose(0, 1)
        yield t[1:, 1:]
    if t.numel() > 1:
        yield t.reshape(-1)[1:]
    if t.numel() >= 5:
        yield t.as_strided((1, 5, 1), (99, 1, 7))


@pytest.mark.parametrize("dtype", [*DTYPES, torch.complex64, torch.uint16], ids=str)
def test_every_path_hashes_the_logical_bytes(dtype):
    """The fast path (a ctypes buffer over a contiguous tensor's bytes) and the general one (a
    uint8 view of the elements in logical order) give the same fingerprint for the same
    content."""
    import xxhash
    from traincheck_torch.fingerprint import byte_view

    for shape in [(), (0,), (7,), (3, 5), (2, 1, 4)]:
        base = torch.randn(shape, dtype=dtype) if dtype.is_complex else _rand(shape, dtype)
        for t in (*_layouts(base), *(_layouts(base.conj()) if dtype.is_complex else ())):
            want = xxhash.xxh3_64_hexdigest(byte_view(t))
            assert fingerprint(t) == want == fingerprint(t), (shape, t.stride())
