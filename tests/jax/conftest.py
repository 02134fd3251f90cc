"""JAX adapter tests: skipped when JAX, Optax or Flax are not installed."""

from __future__ import annotations

import pytest

for mod in ("jax", "optax", "flax"):
    pytest.importorskip(mod)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "jax: needs JAX/Optax/Flax and the traincheck-jax plugin")
