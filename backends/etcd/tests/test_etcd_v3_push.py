"""The etcd streams push: the reader thread that reads the server applies each batch to the watch itself.

Between the socket and the watch's consumer there is one thread, the
reader, as for a bare client; no queue and no second thread that a busy
machine could schedule late. :class:`~discovery_etcd._common.QueuedStream`
queues only until a watch takes its items with ``deliver_to``, then hands
each one over in the reader's thread, after those it had queued, in order.
These tests check who delivers, never how fast.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest

import discovery
from discovery import _watch as watch_engine
from discovery.backend import Batch, Gap
from discovery.errors import BackendError, DiscoveryError
from discovery.models import EventKind, Notice
from discovery.servers import EtcdCluster
from discovery_etcd._common import QueuedStream
from discovery_etcd._errors import V3_ERRORS

_READER = "scripted-reader"


class _Died(BaseException):
    """What kills a reader thread past its own guard (a BaseException, not an Exception)."""


class _Scripted(QueuedStream):
    """A stream whose reader emits a script of items, waiting at ``pause_at`` until ``go`` is set."""

    def __init__(
        self, script: list[Batch | Gap | DiscoveryError | BaseException], pause_at: int, capacity: int
    ) -> None:
        super().__init__("etcd", _READER, V3_ERRORS, capacity=capacity)
        self.script = script
        self.pause_at = pause_at
        self.go = threading.Event()
        self.done = threading.Event()
        self.stopped_early = False
        self._start()

    def _run(self) -> None:
        try:
            for index, item in enumerate(self.script):
                if index == self.pause_at:
                    self.go.wait(10)
                if isinstance(item, BaseException):
                    raise item
                if not self._emit(item):
                    self.stopped_early = True
                    return
            self._ended = True
        finally:
            self.done.set()

    def _abort(self) -> None:
        self.go.set()


def _batch(revision: int) -> Batch:
    return Batch(revision, ())


class _Recorder:
    """A sink that records each item and the thread it came from; refuses once ``refuse_at`` revision came."""

    def __init__(self, refuse_at: int | None = None) -> None:
        self.items: list[tuple[Batch | Gap | DiscoveryError, str]] = []
        self.refuse_at = refuse_at
        self.ended = threading.Event()

    def __call__(self, item: Batch | Gap | DiscoveryError) -> bool:
        self.items.append((item, threading.current_thread().name))
        wanted = not (isinstance(item, Batch) and item.revision == self.refuse_at)
        if not wanted or not isinstance(item, Batch):
            self.ended.set()
        return wanted

    def revisions(self) -> list[int]:
        return [item.revision for item, _ in self.items if isinstance(item, Batch)]


@pytest.fixture
def streams() -> Iterator[list[_Scripted]]:
    made: list[_Scripted] = []
    yield made
    for stream in made:
        stream.close()


def test_queued_items_go_first_then_the_reader_pushes_in_order(streams: list[_Scripted]) -> None:
    """Items queued before ``deliver_to`` (a full queue blocking the reader, too) reach the sink first, in order."""
    stream = _Scripted([*map(_batch, range(1, 41)), Gap("compacted")], pause_at=3, capacity=2)
    streams.append(stream)
    sink = _Recorder()
    # The reader queued two items and blocks on the full queue with the third.
    stream.deliver_to(sink)
    stream.go.set()
    assert sink.ended.wait(10)
    assert sink.revisions() == list(range(1, 41))
    assert sink.items[-1][0] == Gap("compacted")
    assert {thread for _, thread in sink.items[3:]} == {_READER}
    assert stream.next(0) is None  # handed over, never kept as well


def test_a_sink_that_wants_no_more_stops_the_reader(streams: list[_Scripted]) -> None:
    stream = _Scripted(list(map(_batch, range(1, 21))), pause_at=0, capacity=8)
    streams.append(stream)
    sink = _Recorder(refuse_at=5)
    stream.deliver_to(sink)
    stream.go.set()
    assert stream.done.wait(10)
    assert stream.stopped_early
    assert sink.revisions() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("death", "message"),
    [(RuntimeError("boom"), "boom"), (_Died("gone"), "watch stream reader died")],
    ids=["exception", "thread-death"],
)
def test_a_reader_that_dies_hands_the_error_over(streams: list[_Scripted], death: BaseException, message: str) -> None:
    stream = _Scripted([_batch(1), death], pause_at=0, capacity=8)
    streams.append(stream)
    sink = _Recorder()
    stream.deliver_to(sink)
    stream.go.set()
    assert sink.ended.wait(10)
    (first, _), (last, thread) = sink.items
    assert first == _batch(1)
    assert isinstance(last, BackendError) and message in str(last)
    assert thread == _READER


@pytest.mark.parametrize(("scheme", "reader"), [("etcd", "etcd-watch-"), ("etcd2", "etcd2-watch-")])
def test_the_reader_thread_buffers_the_events_itself(
    etcd_cluster: EtcdCluster, root: str, monkeypatch: pytest.MonkeyPatch, scheme: str, reader: str
) -> None:
    """On both etcd APIs, each event reaches the consumer's buffer from the thread that read it from etcd.

    The watch's own thread only acts on gaps, errors and resyncs: with its
    poll interval at an hour, the events still come, all buffered by the reader.
    """
    monkeypatch.setattr(watch_engine, "_POLL_SECONDS", 3600.0)
    buffered_by: list[str] = []
    push = watch_engine.Watch._push

    def recording(self: watch_engine.Watch, items: Sequence[discovery.Event | Notice]) -> None:
        buffered_by.extend(threading.current_thread().name for item in items if isinstance(item, discovery.Event))
        push(self, items)

    monkeypatch.setattr(watch_engine.Watch, "_push", recording)
    with discovery.connect(etcd_cluster.url(scheme, root)) as registry, registry.watch("svc") as watch:
        for n in range(5):
            registry.register("svc", f"h{n}", ttl=30)
        events = [watch.get(10) for _ in range(5)]
    assert [(e.kind, e.instance_id) for e in events if e is not None] == [(EventKind.ADDED, f"h{n}") for n in range(5)]
    assert len(buffered_by) == 5 and all(name.startswith(reader) for name in buffered_by), buffered_by
