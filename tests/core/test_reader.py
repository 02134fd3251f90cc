"""Reader: merged order, growing files, corruption reported with file and offset."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traincheck_core import TraceCorruptError
from traincheck_core import events as ev
from traincheck_core.trace import MAGIC, TraceFile, TraceWriter, iter_run


def header(pid: int, t: int = 0) -> ev.Header:
    return ev.Header(schema=1, run_id="r", host="h", pid=pid, ppid=1, rank=pid, world_size=2,
                     local_rank=pid, python="3.11", traincheck="0", frameworks={}, plugins={},
                     argv=[], started=0.0, t=t)


def write(path, events, close=True):
    w = TraceWriter(path, interval=0)
    for e in events:
        w.emit(e)
    if close:
        w.close(t=10_000)
    else:
        w.flush()
    return w


def test_merged_order_across_files(tmp_path) -> None:
    write(tmp_path / "a.tctrace", [header(0, 0)] + [ev.MetaUpdate(t=t, values={"step": t})
                                                    for t in (1, 4, 7)])
    write(tmp_path / "b.tctrace", [header(1, 0)] + [ev.MetaUpdate(t=t, values={"step": t})
                                                    for t in (2, 3, 9)])
    recs = list(iter_run(tmp_path))
    ts = [r.event.t for r in recs]
    assert ts == sorted(ts)
    assert {r.source for r in recs} == {0, 1}
    # events of one file keep their file order
    for src in (0, 1):
        mine = [r.event.t for r in recs if r.source == src]
        assert mine == sorted(mine)


def test_truncated_tail_is_not_an_error(tmp_path) -> None:
    p = tmp_path / "t.tctrace"
    write(p, [header(0), ev.MetaUpdate(t=1, values={"step": 1})], close=False)
    full = p.read_bytes()
    p.write_bytes(full[:-3])  # cut the last frame short
    tf = TraceFile(p)
    got = tf.read_all()
    assert len(got) == 1 and isinstance(got[0], ev.Header)
    assert tf.partial_tail > 0 and not tf.finished


def test_corrupt_frame_names_file_and_offset(tmp_path) -> None:
    p = tmp_path / "t.tctrace"
    write(p, [header(0), ev.MetaUpdate(t=1, values={"step": 1})])
    data = bytearray(p.read_bytes())
    second = len(MAGIC) + 4 + int.from_bytes(data[len(MAGIC):len(MAGIC) + 4], "little")
    data[second + 4:second + 8] = b"\xc1\xc1\xc1\xc1"  # 0xc1 is never valid msgpack
    p.write_bytes(bytes(data))
    with pytest.raises(TraceCorruptError) as info:
        TraceFile(p).read_all()
    assert info.value.path == str(p)
    assert info.value.offset == second
    assert str(p) in str(info.value) and f"byte {second}" in str(info.value)


def test_not_a_trace(tmp_path) -> None:
    p = tmp_path / "x.tctrace"
    p.write_bytes(b"hello world, not a trace")
    with pytest.raises(TraceCorruptError, match="not a traincheck trace"):
        TraceFile(p).read_all()


def test_follow_a_growing_file(tmp_path) -> None:
    p = tmp_path / "g.tctrace"
    w = TraceWriter(p, interval=0)
    w.emit(header(0))
    w.flush()

    def produce() -> None:
        for i in range(1, 6):
            time.sleep(0.05)
            w.emit(ev.MetaUpdate(t=i, values={"step": i}))
            w.flush()
        w.close(t=100)

    th = threading.Thread(target=produce)
    th.start()
    got = [r.event for r in iter_run(tmp_path, follow=True, poll=0.02, idle_timeout=10)]
    th.join()
    steps = [e.values["step"] for e in got if isinstance(e, ev.MetaUpdate)]
    assert steps == [1, 2, 3, 4, 5]
    assert isinstance(got[-1], ev.Footer)


def _valid_trace_bytes() -> bytes:
    import msgspec

    out = bytearray(MAGIC)
    for e in [header(0), ev.MetaUpdate(t=1, values={"step": 1}),
              ev.CallStart(t=2, id=1, parent=0, api="a.b", thread=1), ev.CallReturn(t=3, id=1)]:
        data = msgspec.msgpack.encode(e)
        out += len(data).to_bytes(4, "little") + data
    return bytes(out)


VALID = _valid_trace_bytes()


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=200).map(lambda b: MAGIC + b),
    st.integers(0, len(VALID)).map(lambda n: VALID[:n]),
    st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)).map(
        lambda ab: VALID[:ab[0]] + bytes([ab[1]]) + VALID[ab[0] + 1:]),
))
def test_fuzz_reader_only_raises_documented_error(tmp_path, data: bytes) -> None:
    p = tmp_path / "fuzz.tctrace"
    p.write_bytes(data)
    try:
        events = TraceFile(p).read_all()
    except TraceCorruptError as exc:
        assert 0 <= exc.offset <= len(data)
        return
    for e in events:
        assert isinstance(e, ev.EVENT_TYPES)


def test_truncation_at_every_byte_keeps_complete_frames(tmp_path) -> None:
    p = tmp_path / "cut.tctrace"
    for n in range(len(VALID) + 1):
        p.write_bytes(VALID[:n])
        got = TraceFile(p).read_all()
        # every frame that ends at or before n decodes, nothing else appears
        assert all(isinstance(e, ev.EVENT_TYPES) for e in got)
    assert len(TraceFile(p).read_all()) == 4
