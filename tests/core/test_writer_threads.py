"""Trace writer under concurrency: threads emitting while the flusher writes lose no event,
split no frame, and the footer counts everything before it; streaming to taps sends at once
and writes the file within the interval."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from traincheck_core import events as ev
from traincheck_core.trace import TraceFile, TraceWriter


def _header() -> ev.Header:
    return ev.Header(schema=1, run_id="r", host="h", pid=1, ppid=1, rank=None, world_size=None,
                     local_rank=None, python="3.11", traincheck="0", frameworks={}, plugins={},
                     argv=[], started=0.0, t=0)


def test_threads_and_flusher_keep_every_frame(tmp_path) -> None:
    # a tiny buffer and interval: emits, size-triggered flushes and the flusher interleave
    w = TraceWriter(tmp_path / "t.tctrace", buffer_bytes=4096, interval=0.001)
    w.emit(_header())
    per_thread, threads = 3000, 4

    def work(k: int) -> None:
        for i in range(per_thread):
            w.emit(ev.MetaUpdate(t=i, values={"thread": k, "i": i}))

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert w.count == 1 + per_thread * threads
    w.close(t=1)
    events = TraceFile(tmp_path / "t.tctrace").read_all()
    assert isinstance(events[0], ev.Header) and isinstance(events[-1], ev.Footer)
    assert events[-1].events == 1 + per_thread * threads
    seen: dict[int, list[int]] = {}
    for e in events[1:-1]:
        assert isinstance(e, ev.MetaUpdate)
        seen.setdefault(e.values["thread"], []).append(e.values["i"])
    # every event of every thread, each thread's in the order it emitted them
    assert seen == {k: list(range(per_thread)) for k in range(threads)}


def test_a_tap_gets_exactly_the_frames_written_after_it(tmp_path) -> None:
    # flushes from emitting threads and the flusher interleave; the tap sees the
    # file's bytes from its start on, whole frames in file order, nothing twice
    w = TraceWriter(tmp_path / "t.tctrace", buffer_bytes=2048, interval=0.001)
    w.emit(_header())
    w.emit(ev.MetaUpdate(t=0, values={"before": True}))
    got: list[bytes] = []
    w.add_tap(got.append)
    size_at_tap = (tmp_path / "t.tctrace").stat().st_size

    def work(k: int) -> None:
        for i in range(2000):
            w.emit(ev.MetaUpdate(t=i, values={"thread": k, "i": i}))
            if i % 500 == 0:
                w.flush()
            elif i % 100 == 0:
                w.stream()

    pool = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    w.close(t=1)
    data = (tmp_path / "t.tctrace").read_bytes()
    assert b"".join(got) == data[size_at_tap:]
    assert all(isinstance(e, ev.MetaUpdate) for e in _frames(b"".join(got))[:-1])


def test_stream_sends_to_taps_at_once_and_to_the_file_within_the_interval(tmp_path,
                                                                          monkeypatch) -> None:
    from traincheck_core.trace import writer

    clock = [time.monotonic()]  # the writer's clock, moved by hand
    monkeypatch.setattr(writer, "time", SimpleNamespace(
        monotonic=lambda: clock[0], monotonic_ns=lambda: int(clock[0] * 1e9)))
    path = tmp_path / "t.tctrace"
    w = TraceWriter(path, interval=0.2)
    w.emit(_header())
    got: list[bytes] = []
    w.add_tap(got.append)  # writes what came before it (the header) to the file
    size = path.stat().st_size
    w.emit(ev.MetaUpdate(t=1, values={"step": 1}))
    w.stream()
    assert [e.values for e in _frames(b"".join(got))] == [{"step": 1}]  # the tap: now
    assert path.stat().st_size == size  # the file: not yet (it was written just now)
    clock[0] += 0.15  # more than half the interval since the file was written
    w.emit(ev.MetaUpdate(t=2, values={"step": 2}))
    w.stream()
    assert path.stat().st_size == size + len(b"".join(got))  # both steps, in order
    w.emit(ev.MetaUpdate(t=3, values={"step": 3}))
    w.stream()
    w.close(t=4)  # everything reaches the file, the tap's bytes first
    data = path.read_bytes()
    assert data[size:].startswith(b"".join(got))
    steps = [e.values["step"] for e in TraceFile(path).read_all() if isinstance(e, ev.MetaUpdate)]
    assert steps == [1, 2, 3]


def test_stream_without_taps_writes_the_file_at_once(tmp_path) -> None:
    path = tmp_path / "t.tctrace"
    w = TraceWriter(path, interval=60)
    w.emit(_header())
    w.stream()
    size = path.stat().st_size
    w.emit(ev.MetaUpdate(t=1, values={"step": 1}))
    w.stream()
    assert path.stat().st_size > size
    w.close()


def test_a_session_streams_at_meta_updates(tmp_path) -> None:
    from traincheck_core.config import Config
    from traincheck_core.plugins.manager import make_plugin_manager
    from traincheck_core.session import Session

    pm, infos = make_plugin_manager(None, autoload=False)
    s = Session(Config(output=str(tmp_path)), pm, infos)
    got: list[bytes] = []
    s.add_tap(got.append)
    s.set_meta(step=1)  # a new step: the checker gets everything up to it now
    assert [e.values for e in _frames(b"".join(got))] == [{"step": 1}]
    s.set_meta(stage="train")  # a stage change too
    assert [e.values for e in _frames(b"".join(got))] == [{"step": 1}, {"stage": "train"}]
    s.set_meta(stage="train")  # no change: nothing emitted, nothing sent
    assert len(_frames(b"".join(got))) == 2
    s.writer.close()


def _frames(data: bytes) -> list[ev.Event]:
    import msgspec

    from traincheck_core.check.channel import FrameReader

    decoder = msgspec.msgpack.Decoder(ev.Event)
    return [decoder.decode(f) for f in FrameReader().feed(data)]
