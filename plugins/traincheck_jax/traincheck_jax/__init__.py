"""traincheck adapter for JAX, Optax and Flax.

The plugin module is :mod:`traincheck_jax.plugin` (entry point ``jax`` in the group
``traincheck.plugins``). Nothing here imports JAX: the probes are installed by post-import
hooks when the training program imports ``jax``, ``optax`` and ``flax``.
"""

__version__ = "0.1.0"
