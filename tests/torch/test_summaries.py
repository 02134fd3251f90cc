"""Argument summaries of tensors: unfingerprinted summaries are shared between tensors alike
in type, shape, dtype, device and ``requires_grad``, and never between tensors that differ."""

from __future__ import annotations

import msgspec
import pytest

torch = pytest.importorskip("torch")

from traincheck_torch.fingerprint import fingerprint  # noqa: E402
from traincheck_torch.summarize import tensor_summary  # noqa: E402

pytestmark = pytest.mark.torch


def test_alike_tensors_share_one_summary_equal_to_a_fresh_one():
    a, b = torch.randn(4, 8), torch.zeros(4, 8)
    shared = tensor_summary(a, with_fp=False)
    assert tensor_summary(b, with_fp=False) is shared
    fresh = msgspec.msgpack.encode(msgspec.structs.replace(shared))
    assert msgspec.msgpack.encode(shared) == fresh
    assert (shared.shape, shared.dtype, shared.device, shared.fp) == ([4, 8], "float32", "cpu",
                                                                       None)


@pytest.mark.parametrize("other", [
    lambda: torch.randn(8, 4),                      # shape
    lambda: torch.randn(4, 8, dtype=torch.float64),  # dtype
    lambda: torch.randn(4, 8, requires_grad=True),   # requires_grad
    lambda: torch.nn.Parameter(torch.randn(4, 8)),   # class
])
def test_tensors_that_differ_get_their_own_summary(other):
    base = tensor_summary(torch.randn(4, 8), with_fp=False)
    t = other()
    got = tensor_summary(t, with_fp=False)
    assert got is not base
    assert (got.shape, got.dtype, got.extra["requires_grad"]) == (
        list(t.shape), str(t.dtype).removeprefix("torch."), t.requires_grad)


def test_fingerprinted_summaries_are_never_shared():
    a, b = torch.ones(3), torch.zeros(3)
    sa, sb = tensor_summary(a), tensor_summary(b)
    assert sa is not sb and (sa.fp, sb.fp) == (fingerprint(a), fingerprint(b))
