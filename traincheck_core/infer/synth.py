"""Synthetic training traces built from core events, for tests and benchmarks.

No framework is involved: :class:`TraceBuilder` writes the events an adapter would emit for a
plain training loop (zero_grad, forward, backward, optimizer step, an evaluation pass), with
knobs to plant bugs. API names follow the PyTorch adapter's conventions only as strings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..events import (
    CallReturn,
    CallStart,
    Event,
    Footer,
    Header,
    MetaUpdate,
    ObjSummary,
    Scalar,
    Summary,
    TensorSummary,
    VarState,
)
from ..relations.base import Relation, RunItems
from ..trace.reader import Record
from ..trace.writer import TraceWriter

__all__ = ["TraceBuilder", "training_run", "fp", "merged_records", "run_items", "check_items"]

OPT = "torch.optim.Optimizer"
MOD = "torch.nn.Module"


def fp(*parts: Any) -> str:
    """A deterministic fake fingerprint."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


class TraceBuilder:
    """Events of one process, with monotonic times and call ids."""

    def __init__(self, run_id: str = "run1", rank: int | None = None,
                 world_size: int | None = None, pid: int = 1000, host: str = "node",
                 frameworks: dict[str, str] | None = None, t0: int = 0) -> None:
        self.events: list[Event] = []
        self._t = t0
        self._id = 0
        self._stack: list[int] = [0]
        self.events.append(Header(
            schema=1, run_id=run_id, host=host, pid=pid, ppid=1, rank=rank,
            world_size=world_size, local_rank=rank, python="3.11", traincheck="0.1.0",
            frameworks=frameworks or {"torch": "2.13.0"}, plugins={}, argv=["train.py"],
            started=0.0, t=self._tick()))

    def _tick(self) -> int:
        self._t += 1000
        return self._t

    def meta(self, **values: Any) -> None:
        self.events.append(MetaUpdate(t=self._tick(), values=values))

    @contextmanager
    def call(self, api: str, args: dict[str, Summary] | None = None,
             ret: Summary | None = None, loc: str | None = "train.py:10") -> Iterator[int]:
        self._id += 1
        cid = self._id
        self.events.append(CallStart(t=self._tick(), id=cid, parent=self._stack[-1], api=api,
                                     thread=1, args=args or {}, loc=loc))
        self._stack.append(cid)
        try:
            yield cid
        finally:
            self._stack.pop()
            self.events.append(CallReturn(t=self._tick(), id=cid, ret=ret))

    def var(self, name: str, attrs: dict[str, Any], call: int = 0, vtype: str = "param") -> None:
        self.events.append(VarState(t=self._tick(), name=name, vtype=vtype, attrs=attrs,
                                    call=call))

    def end(self) -> None:
        self.events.append(Footer(t=self._tick(), events=len(self.events), reason="exit"))

    def records(self, source: int = 0) -> list[Record]:
        return [Record(source, ev) for ev in self.events]

    def write(self, path: str | Path) -> Path:
        p = Path(path)
        w = TraceWriter(p, interval=0)
        last = None
        for ev in self.events:
            if isinstance(ev, Footer):
                last = ev
                continue
            w.emit(ev)
        w.close(t=last.t if last is not None else self._tick())
        return p


def _self(typ: str, **attrs: Any) -> dict[str, Summary]:
    return {"self": ObjSummary(type=typ, attrs={k: Scalar(v) for k, v in attrs.items()})}


def _tensor(shape: list[int], dtype: str = "float32", fpv: str | None = None) -> TensorSummary:
    return TensorSummary(type="torch.Tensor", shape=shape, dtype=dtype, device="cpu", fp=fpv)


def training_run(b: TraceBuilder, steps: int, params: int = 4, frozen: int = 0,
                 optimizer: str = "torch.optim.adam.Adam", skip_update_at: int | None = None,
                 forget_zero_grad_at: int | None = None, eval_every: int = 0,
                 forget_eval: bool = False, seed: Any = 0, replica: bool = True,
                 counter: bool = True, flaky: int = 0) -> TraceBuilder:
    """A plain training loop on ``params`` trainable and ``frozen`` frozen parameters.

    Planted bugs: ``skip_update_at`` (the optimizer step changes nothing at that step),
    ``forget_zero_grad_at`` (zero_grad leaves gradients), ``forget_eval`` (evaluation forwards
    run without ``eval()``). ``replica``: parameter values depend only on the step (equal across
    ranks); otherwise they also depend on ``seed``. ``flaky``: extra trained parameters that the
    step leaves unchanged on odd steps, as it does a bias right before a batch norm (its
    gradient is numerically zero, so the update underflows).
    """
    names = [f"model.layer{i}.weight" for i in range(params + frozen)]
    flaky_names = [f"model.layer{i}.bias" for i in range(flaky)]
    names += flaky_names
    trainable = names[:params] + flaky_names
    salt = 0 if replica else seed

    def state(name: str, step: int, grad: bool) -> dict[str, Any]:
        train = name in trainable
        if name in flaky_names:
            step -= (step + 1) // 2  # the updates of odd steps are lost
        return {"data": fp(name, step if train else 0, salt), "grad": fp(name, step, "g", salt)
                if (grad and train) else None, "requires_grad": train, "dtype": "float32",
                "shape": [4, 4], "device": "cpu", "is_param": True}

    b.meta(step=0, stage="train", epoch=0)
    for n in names:
        b.var(n, state(n, 0, False))
    if counter:
        b.var("optimizer.state.step", {"value": 0}, vtype="counter")
    opt_self = _self(optimizer)
    for s in range(steps):
        with b.call(f"{OPT}.zero_grad", opt_self) as c:
            if forget_zero_grad_at != s:
                for n in trainable:
                    if s > 0:
                        b.var(n, state(n, s, False), call=c)
        with b.call(f"{MOD}.forward", {**_self("Net", training=True), "input": _tensor([8, 4])},
                    ret=_tensor([8, 2])):
            pass
        with b.call("torch.Tensor.backward", {"self": _tensor([])}) as c:
            for n in trainable:
                b.var(n, state(n, s, True), call=c)
        with b.call(f"{OPT}.step", opt_self) as c:
            if skip_update_at != s:
                for n in trainable:
                    st = state(n, s + 1, True)
                    st["grad"] = state(n, s, True)["grad"]
                    b.var(n, st, call=c)
                if counter:
                    b.var("optimizer.state.step", {"value": s + 1}, call=c, vtype="counter")
        b.meta(step=s + 1)
        if eval_every and (s + 1) % eval_every == 0:
            _evaluate(b, forget_eval)
    b.end()
    return b


def _evaluate(b: TraceBuilder, forget_eval: bool) -> None:
    if not forget_eval:
        with b.call(f"{MOD}.eval", _self("Net", training=True)):
            pass
    b.meta(stage="eval")
    for _ in range(3):
        with b.call(f"{MOD}.forward", {**_self("Net", training=forget_eval),
                                       "input": _tensor([16, 4])}, ret=_tensor([16, 2])):
            pass
    with b.call(f"{MOD}.train", _self("Net", training=False)):
        pass
    b.meta(stage="train")


def merged_records(*builders: TraceBuilder) -> list[Record]:
    """The records of several processes merged by time, as a run directory reads."""
    import heapq

    return list(heapq.merge(*[b.records(i) for i, b in enumerate(builders)],
                            key=lambda r: r.event.t))


def run_items(*builders: TraceBuilder, run_id: str | None = None) -> RunItems:
    """Assemble the builders' events into one run's analysis items."""
    from ..analysis import Assembler

    asm = Assembler()
    items = list(asm.feed_all(merged_records(*builders)))
    rid = run_id or (builders[0].events[0].run_id if builders else "run")  # type: ignore[union-attr]
    return RunItems(rid, items, dict(asm.procs), {"torch": "2.13.0"})


def check_items(relation: Relation, invariants: list[Any], *builders: TraceBuilder) -> list[Any]:
    """Run ``relation``'s checker over the builders' events (as the check engine does)."""
    from ..analysis import Assembler

    checker = relation.checker(invariants)
    out: list[Any] = []
    for item in Assembler().feed_all(merged_records(*builders)):
        out += list(checker.feed(item))
    out += list(checker.finish())
    return out
