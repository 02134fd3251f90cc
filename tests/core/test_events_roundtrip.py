"""Every event type survives encode → frame → decode unchanged."""

from __future__ import annotations

import msgspec
import pytest

from traincheck_core import events as ev
from traincheck_core.trace import TraceFile, TraceWriter

SAMPLES = [
    ev.Header(schema=ev.SCHEMA_VERSION, run_id="r1", host="h", pid=1, ppid=0, rank=0,
              world_size=2, local_rank=0, python="3.11.7", traincheck="0.1.0",
              frameworks={"torch": "2.13.0"}, plugins={"torch": "0.1.0"},
              argv=["train.py", "--lr", "0.1"], started=1.5, t=10),
    ev.CallStart(t=11, id=1, parent=0, api="torch.optim.Optimizer.step", thread=7,
                 args={"self": ev.ObjSummary("torch.optim.adam.Adam",
                                             {"lr": ev.Scalar(0.001)}),
                       "x": ev.TensorSummary("torch.Tensor", [2, 3], "torch.float32", "cpu",
                                             "00ff", {"requires_grad": True}),
                       "l": ev.SeqSummary("list", 9, [ev.Scalar(1), ev.Scalar("a")]),
                       "d": ev.MapSummary("dict", 1, {"k": ev.Scalar(None)})},
                 loc="train.py:42"),
    ev.CallReturn(t=12, id=1, ret=ev.Scalar(0.5)),
    ev.CallReturn(t=12, id=2),
    ev.CallError(t=13, id=3, exc_type="ValueError", message="bad"),
    ev.VarState(t=14, name="model.fc1.weight", vtype="torch.nn.Parameter",
                attrs={"data": "ab12", "grad": None, "requires_grad": True, "shape": [4, 3],
                       "lr": 0.1, "dtype": "torch.float32"}, call=1),
    ev.MetaUpdate(t=15, values={"step": 3, "stage": "eval", "mesh": [0, 1], "flag": False}),
    ev.Footer(t=16, events=7, reason="exit"),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_msgpack_roundtrip(event: ev.Event) -> None:
    data = msgspec.msgpack.encode(event)
    assert msgspec.msgpack.decode(data, type=ev.Event) == event


def test_every_event_type_is_sampled() -> None:
    assert {type(e) for e in SAMPLES} == set(ev.EVENT_TYPES)


def test_file_roundtrip_keeps_order(tmp_path) -> None:
    w = TraceWriter(tmp_path / "t.tctrace", interval=0)
    for e in SAMPLES[:-1]:
        w.emit(e)
    w.close(t=99)
    got = TraceFile(tmp_path / "t.tctrace").read_all()
    assert got[:-1] == SAMPLES[:-1]
    assert isinstance(got[-1], ev.Footer) and got[-1].events == len(SAMPLES) - 1


def test_secrets_never_in_header(tmp_path, monkeypatch) -> None:
    from traincheck_core.config import Config
    from traincheck_core.plugins.manager import make_plugin_manager
    from traincheck_core.session import Session

    monkeypatch.setenv("MY_API_TOKEN", "s3cr3t-value")
    pm, infos = make_plugin_manager(None, autoload=False)
    s = Session(Config(output=str(tmp_path)), pm, infos)
    s.writer.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("*.tctrace"))
    assert b"s3cr3t-value" not in raw
    assert b"MY_API_TOKEN" not in raw


def test_frame_sinks_get_the_trace_bytes_and_raw_parts_encode_alike(tmp_path) -> None:
    """A frame sink (the checker process's pipe) receives each event exactly as the trace
    file holds it, so it is encoded once; a pre-encoded ``msgspec.Raw`` part gives the same
    bytes and decodes to the same event."""
    import msgspec

    from traincheck_core.config import Config
    from traincheck_core.plugins.manager import make_plugin_manager
    from traincheck_core.session import Session

    pm, infos = make_plugin_manager(None, autoload=False)
    s = Session(Config(output=str(tmp_path)), pm, infos)
    assert s.frames_only  # no sink yet
    frames: list[bytes] = []
    s.add_sink(lambda event, frame: frames.append(frame), frames=True)
    assert s.frames_only
    call = next(e for e in SAMPLES if isinstance(e, ev.CallStart))
    raw_args = msgspec.Raw(msgspec.msgpack.encode(call.args))
    s.emit(call)
    s.emit(msgspec.structs.replace(call, args=raw_args))
    assert frames[0] == frames[1]
    seen: list = []
    s.add_sink(seen.append)  # a sink reading event objects: no Raw parts then
    assert not s.frames_only
    s.writer.close()
    [path] = tmp_path.glob("*.tctrace")
    data = path.read_bytes()
    assert data.count(frames[0]) == 2
    got = [e for e in TraceFile(path).read_all() if isinstance(e, ev.CallStart)]
    assert got == [call, call]
