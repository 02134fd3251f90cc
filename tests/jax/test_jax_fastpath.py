"""The adapter's per-step shortcuts must not change what it reports: fingerprints still cover
every byte and position, cached metadata and leaf names equal freshly computed ones, and
arguments of a jitted function that donates them are read before the call."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state
from tracehelp import Trace
from traincheck_jax.arrays import ArrayKit
from traincheck_jax.pytrees import VarNamer, flatten_vars

pytestmark = pytest.mark.jax


@pytest.fixture
def kit() -> ArrayKit:
    return ArrayKit(jax)


def test_fingerprint_sees_every_element_and_position(kit: ArrayKit) -> None:
    base = np.arange(4096, dtype=np.float32)
    fp = kit.fingerprint(jnp.asarray(base))
    assert fp == kit.fingerprint(jnp.asarray(base.copy()))  # same content, other object
    for i in (0, 1000, 4095):  # one element anywhere
        changed = base.copy()
        changed[i] += 1
        assert kit.fingerprint(jnp.asarray(changed)) != fp, i
    swapped = base.copy()
    swapped[[10, 20]] = swapped[[20, 10]]
    assert kit.fingerprint(jnp.asarray(swapped)) != fp
    assert kit.fingerprint(jnp.asarray(base[:-1])) != fp  # a shorter array
    assert kit.fingerprint(base) == fp  # a host copy of the same bytes: the same fingerprint
    assert kit.fingerprint(base[::2]) == kit.fingerprint(jnp.asarray(base[::2]))  # strided


def test_fingerprint_of_any_dtype_keys_and_deleted_buffers(kit: ArrayKit) -> None:
    for dtype in (jnp.bfloat16, jnp.bool_, jnp.int8, jnp.float16):
        a = jnp.zeros(7, dtype)
        b = a.at[3].set(jnp.ones((), dtype))
        assert kit.fingerprint(a) and kit.fingerprint(a) != kit.fingerprint(b), dtype
    k0, k1 = jax.random.key(0), jax.random.key(1)  # typed keys: hashed by their key data
    assert kit.fingerprint(k0) != kit.fingerprint(k1)
    assert kit.summarize(k0).extra == {"prng_key": True}
    gone = jnp.ones(3) + 1
    gone.delete()
    assert kit.fingerprint(gone) is None


def test_numpy_array_written_in_place_is_read_again(kit: ArrayKit) -> None:
    # a host batch buffer refilled every step must not keep its first fingerprint
    host = np.zeros(8, np.float32)
    before = kit.fingerprint(host)
    host[3] = 1
    assert kit.fingerprint(host) != before
    assert kit.summarize(host).fp == kit.fingerprint(host)


def test_cached_metadata_equals_fresh(kit: ArrayKit) -> None:
    # Same shape, other dtype: the cache must not hand one's metadata to the other.
    f, i = jnp.zeros((2, 3), jnp.float32), jnp.zeros((2, 3), jnp.int32)
    for _ in range(2):
        assert kit.summarize(f).dtype == "float32" and kit.summarize(i).dtype == "int32"
    s = kit.summarize(f)
    assert s.shape == [2, 3] and s.device == str(next(iter(f.devices()))) and s.fp
    attrs = kit.var_attrs(i, "fp", None)
    assert attrs["dtype"] == "int32" and attrs["shape"] == [2, 3]
    assert attrs["sharding"] == str(i.sharding)
    host = kit.summarize(np.ones(4, np.float64))
    assert (host.type, host.device, host.dtype) == ("numpy.ndarray", "host", "float64")
    big = kit.summarize(jnp.zeros(1 << 17))  # large call arguments keep no fingerprint
    assert big.fp is None and big.shape == [1 << 17]


def _names(pairs: list[tuple[str, object]]) -> list[tuple[str, int]]:
    return [(n, id(leaf)) for n, leaf in pairs]


def test_var_namer_names_like_uncached_flattening() -> None:
    namer, jtu = VarNamer(jax.tree_util), jax.tree_util
    p1 = {"params": {"Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}}}
    p2 = {"params": {"Dense_0": {"kernel": jnp.ones((2, 2)) * 2, "bias": jnp.ones(2)}}}
    other = {"params": {"Dense_1": {"kernel": jnp.ones((2, 2))}}}
    opt = (jnp.zeros(()), {"w": jnp.ones(3)})
    for tree, root in ((p1, None), (p2, None), (other, None), (opt, "opt_state"),
                       (opt, "head_params"), ({"x": jnp.ones(2)}, None)):
        assert _names(namer.pairs(tree, root)) == _names(flatten_vars(jtu, tree, root))
    # same structure, a leaf that is no array this time: it is no variable
    mixed = (1.5, {"w": jnp.ones(3)})
    assert [n for n, _ in namer.pairs(mixed, "opt_state")] == ["opt_state/1/w"]
    state = train_state.TrainState.create(apply_fn=lambda *a: None, params=p1["params"],
                                          tx=optax.sgd(0.1))
    assert _names(namer.pairs(state, None)) == _names(flatten_vars(jtu, state, None))
    assert "params/Dense_0/kernel" in dict(namer.pairs(state, None))


DONATING = """
import jax, jax.numpy as jnp
from functools import partial

@partial(jax.jit, donate_argnums=(0, 1))
def step(params, x):
    return {k: v - 0.1 * x.sum() for k, v in params.items()}, x * 2

@jax.jit
def keep(params, x):
    return {k: v + x.sum() for k, v in params.items()}

@partial(jax.jit, donate_argnums=0)  # a falsy index still donates
def scale(y):
    return y * 3

params, x = {"w": jnp.ones((3, 3)), "b": jnp.zeros(3)}, jnp.arange(4.0)
for i in range(3):
    params, x = step(params, x)
    params = keep(params, x)
    scale(jnp.full(5, float(i)))
print("DONE", float(params["w"][0, 0]))
"""


def test_donated_arguments_are_read_before_the_call(runner) -> None:
    runner.script("donate.py", DONATING)
    res = runner.traincheck("run", "--plugin", "jax", "-o", "out", "donate.py")
    assert res.returncode == 0 and "DONE" in res.stdout, res.stderr
    t = Trace(runner.path / "out")
    donated = [c for c, _ in t.calls_of("jax.jit.step")]
    kept = [c for c, _ in t.calls_of("jax.jit.keep")]
    assert len(donated) == 3 and len(kept) == 3
    # x is donated (deleted by the call): its fingerprint was taken before
    fps = [c.args["x"].fp for c in donated]
    assert None not in fps and len(set(fps)) == 3
    # without donation the arguments are summarized after dispatch: the same fingerprint
    # (each step's x goes to keep, then to the next step)
    assert [c.args["x"].fp for c in kept[:-1]] == fps[1:]
    changes = t.changes_by_api()
    assert changes["params/w"] == {"jax.jit.step": 3, "jax.jit.keep": 3}
    scaled = [c.args["y"].fp for c, _ in t.calls_of("jax.jit.scale")]
    assert len(scaled) == 3 and None not in scaled and len(set(scaled)) == 3


class _Box:
    """A pytree node whose static data is an array: equal structures cannot be compared."""

    def __init__(self, w: object, meta: np.ndarray) -> None:
        self.w, self.meta = w, meta


jax.tree_util.register_pytree_with_keys(
    _Box, lambda b: (((jax.tree_util.GetAttrKey("w"), b.w),), b.meta),
    lambda meta, children: _Box(children[0], meta))


def test_var_namer_with_uncomparable_static_data() -> None:
    namer = VarNamer(jax.tree_util)
    for _ in range(3):  # a new array as static data each time
        box = {"params": _Box(jnp.ones(2), np.arange(2))}
        assert [n for n, _ in namer.pairs(box, None)] == ["params/w"]


ORDERED = """
import jax, jax.numpy as jnp, optax
tx = optax.adam(1e-2)

@jax.jit
def train_step(params, opt_state, x):
    grads = jax.grad(lambda p: ((x @ p["w"]) ** 2).mean())(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

params = {"w": jnp.ones((4, 2))}
opt_state, x = tx.init(params), jnp.ones((3, 4))
for _ in range(3):
    params, opt_state = train_step(params, opt_state, x)
"""


def test_jit_call_events_keep_their_order(runner) -> None:
    # Work moved around the dispatch (summaries after it, values read last) must not move
    # events: start, replayed children, changed variables, return, then the step's end.
    from traincheck_core import CallReturn, CallStart, MetaUpdate, VarState, iter_run

    runner.script("ordered.py", ORDERED)
    res = runner.traincheck("run", "--plugin", "jax", "-o", "out", "ordered.py")
    assert res.returncode == 0, res.stderr
    events = [rec.event for rec in iter_run(runner.path / "out")]
    starts = [i for i, e in enumerate(events)
              if isinstance(e, CallStart) and e.api == "jax.jit.train_step"]
    assert len(starts) == 3
    for i in starts:
        cid = events[i].id
        end = next(j for j in range(i, len(events))
                   if isinstance(events[j], CallReturn) and events[j].id == cid)
        inside = events[i + 1:end]
        kinds = [type(e).__name__ for e in inside]
        children = [e for e in inside if isinstance(e, CallStart)]
        assert children and all(e.parent == cid and e.args["in_jit"].v for e in children)
        changed = [e for e in inside if isinstance(e, VarState)]
        assert {e.name for e in changed} >= {"params/w", "opt_state/0/mu/w"}
        assert all(e.call == cid for e in changed)
        # every child call closes before the first variable state
        assert kinds.index("VarState") > max(k for k, n in enumerate(kinds) if n == "CallReturn")
        after = events[end + 1:end + 3]  # (the rank, once,) then the step
        assert any(isinstance(e, MetaUpdate) and "step" in e.values for e in after)
