"""The core's watch engine against faults: broken streams, lost history, a backend that drops an event."""

from __future__ import annotations

import threading
import uuid
from typing import ClassVar

import pytest

from discovery import EventKind, Registry, WatchBroken, connect
from discovery import _watch as watch_engine
from discovery._watch import _Cursor
from discovery.backend import Batch, ChangeStream, Gap, PushStream, Sink, Target
from discovery.errors import DiscoveryError
from discovery.memory import MemoryBackend
from discovery.models import Event, Notice, NoticeKind
from discovery.testing.checks import collect, drain, kinds_by_instance, state, wait_converged
from discovery.testing.memory import MemoryFixtures, registry_on
from discovery.testing.soak.controls import CONTROLS
from discovery.testing.suite import RegistrySuite
from tests.helpers import DroppingBackend, FlakyBackend


def _url(**query: object) -> str:
    suffix = "&".join(f"{k}={v}" for k, v in query.items())
    return f"memory://engine-{uuid.uuid4().hex[:8]}/r" + (f"?{suffix}" if suffix else "")


def test_broken_stream_resumes_without_resync() -> None:
    url = _url()
    with registry_on(FlakyBackend, url, break_after=5) as watcher, connect(url) as writer:
        backend = watcher.backend
        assert isinstance(backend, FlakyBackend)
        with watcher.watch("svc") as watch:
            for i in range(20):
                writer.register("svc", f"i{i}")
            events = collect(watch, lambda e: len(e) >= 20, 10)
            events += drain(watch)
        assert backend.breaks == 1
        assert watch.resyncs == 0
        assert sorted(e.instance_id for e in events) == sorted(f"i{i}" for i in range(20))


def test_stream_that_cannot_reopen_is_raised_not_silent() -> None:
    url = _url(reconnect_timeout=0.5)
    with registry_on(FlakyBackend, url, break_after=10**9) as watcher:
        backend = watcher.backend
        assert isinstance(backend, FlakyBackend)
        with watcher.watch("svc") as watch, pytest.raises(WatchBroken) as caught:
            with backend.lock:
                backend.refuse_watch = True
                backend.break_after = backend.batches
            watch.get(10)
        assert "server unreachable" in str(caught.value)


def test_watch_from_lost_history_resyncs_and_converges() -> None:
    url = _url(history_window=10)
    with connect(url) as registry:
        lease = registry.register("svc", "a", meta={"n": 0})
        registry.register("svc", "gone").close()
        since = registry.snapshot().revision
        for n in range(30):
            lease.update(meta={"n": n})
        registry.register("svc", "b")
        with registry.watch("svc", since=since) as watch:
            events = collect(watch, lambda e: len(e) >= 2, 10)
            events += drain(watch)
        assert watch.gap_reasons == ("history-window",)
        assert all(e.resync for e in events)
        assert {e.instance_id: e.kind for e in events} == {"a": EventKind.ADDED, "b": EventKind.ADDED}


def test_history_gap_on_raw_stream() -> None:
    with connect(_url(history_window=5)) as registry:
        start = registry.snapshot().revision
        for i in range(10):
            registry.register("svc", f"i{i}")
        stream = registry.backend.watch("", start)
        item = stream.next(1)
        stream.close()
        assert item is not None and not hasattr(item, "changes") and item.reason == "history-window"  # type: ignore[union-attr]


def test_slow_consumer_memory_stays_bounded() -> None:
    with connect(_url()) as registry, registry.watch("svc", buffer_size=10) as watch:
        for i in range(200):
            registry.register("svc", f"i{i}")
        events = wait_converged(watch, registry, [], 10)
        assert watch.resyncs >= 1
        assert len(events) <= 10 + 200


def test_the_suite_catches_a_backend_that_drops_an_event() -> None:
    """A deliberately broken memory backend (one change lost, no gap reported) fails the suite."""

    class ShortFixtures(MemoryFixtures):
        timeout: ClassVar[float] = 2.0

    class Suite(RegistrySuite, ShortFixtures):
        pass

    url = _url()
    with (
        registry_on(DroppingBackend, url, drop_at=123) as watcher,
        connect(url) as writer,
        pytest.raises(AssertionError),
    ):
        Suite().test_flapping_register_then_deregister(registry=writer, other=watcher, parity={})


def test_convergence_check_catches_a_backend_that_drops_a_removal() -> None:
    url = _url()
    with (
        registry_on(DroppingBackend, url, drop_at=15) as watcher,
        connect(url) as writer,
        watcher.watch("svc") as watch,
    ):
        leases = [writer.register("svc", f"i{i}") for i in range(10)]
        for lease in leases:
            lease.close()
        with pytest.raises(AssertionError, match=r"1 in the watch, not in the store \(svc/i4\)$"):
            wait_converged(watch, writer, [], 2)


def _missed_creation_is_resynced(broken: type[MemoryBackend], **faults: int) -> None:
    """The seventh change is lost: the update of a key whose creation was never seen proves it, and resyncs."""
    url = _url()
    with registry_on(broken, url, **faults) as watcher, connect(url) as writer:
        with watcher.watch("svc") as watch:
            leases = [writer.register("svc", f"i{i}") for i in range(10)]
            for lease in leases:
                lease.update(meta={"x": 1})
            events = wait_converged(watch, writer, [], 10)
        assert watch.gap_reasons == ("inconsistent-stream",)
        assert "i6" in [e.instance_id for e in events if e.resync]


def test_core_detects_an_update_to_a_key_whose_creation_it_never_saw() -> None:
    """With every change delivered (INTERMEDIATE_VALUES), a missed creation is a provable gap: resync."""
    _missed_creation_is_resynced(DroppingBackend, drop_at=7)


def _history(registry: Registry) -> None:
    for i in range(5):
        registry.register("h", f"i{i}").close()


def test_per_instance_history_is_real_history() -> None:
    with connect(_url()) as registry, registry.watch("h") as watch:
        _history(registry)
        events = collect(watch, lambda e: len(e) >= 10, 10)
        assert state(watch.snapshot.apply(events)) == state(registry.snapshot("h"))
    assert all(k == [EventKind.ADDED, EventKind.REMOVED] for k in kinds_by_instance(events).values())


def test_cursor_transitions_keep_its_invariants() -> None:
    cursor = _Cursor.replaying(10)
    assert not cursor.already_listed(1)
    assert not cursor.created_since_listing(11)
    cursor.batch_applied(15)
    cursor.emitted_up_to(14)
    # A listing behind what was emitted (a lagging server): events stay at 14, the stream resumes at 12.
    assert cursor.after_listing(12, atomic=True) == 14
    assert (cursor.floor, cursor.baseline, cursor.resume_from, cursor.emitted, cursor.replay) == (12, 12, 12, 14, False)
    assert cursor.already_listed(12) and not cursor.already_listed(13)
    assert cursor.created_since_listing(13) and not cursor.created_since_listing(12)
    assert cursor.after_listing(20, atomic=False) == 20
    assert cursor.floor == 0
    assert _Cursor.listed(7, atomic=True) == _Cursor(7, 7, 7, 7)
    assert _Cursor.listed(7, atomic=False).floor == 0


# -- the push path: an event crosses no thread the backend does not need ------


class _SkippingStream(ChangeStream):
    """A pushing stream that silently skips one batch, the ``skip_at``-th, without reporting a gap."""

    def __init__(self, inner: ChangeStream, backend: SkippingBackend) -> None:
        self._inner = inner
        self._backend = backend

    def next(self, timeout: float) -> Batch | Gap | None:
        return self._inner.next(timeout)

    def deliver_to(self, sink: Sink) -> None:
        def skipping(item: Batch | Gap | DiscoveryError) -> bool:
            if isinstance(item, Batch):
                with self._backend.lock:
                    self._backend.seen += 1
                    if self._backend.seen == self._backend.skip_at:
                        return True
            return sink(item)

        assert isinstance(self._inner, PushStream)
        self._inner.deliver_to(skipping)

    def close(self) -> None:
        self._inner.close()


class SkippingBackend(MemoryBackend):
    """A broken backend whose pushing stream loses one batch."""

    def __init__(self, target: Target, skip_at: int = 7) -> None:
        super().__init__(target)
        self.skip_at = skip_at
        self.seen = 0
        self.lock = threading.Lock()

    def watch(self, prefix: str, after_revision: int | None) -> ChangeStream:
        return _SkippingStream(super().watch(prefix, after_revision), self)


@pytest.fixture
def no_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch's poll interval at an hour: whatever still happens within seconds was woken, not polled."""
    monkeypatch.setattr(watch_engine, "_POLL_SECONDS", 3600.0)


@pytest.mark.usefixtures("no_poll")
def test_a_write_buffers_its_event_before_it_returns() -> None:
    """The memory store pushes: the write applies its change to the watch and wakes the consumer itself.

    No thread stands between the write and the consumer's buffer, so
    nothing can be late: each event is there when ``register`` returns.
    """
    with connect(_url()) as registry, registry.watch("svc") as watch:
        for i in range(20):
            registry.register("svc", f"i{i}", meta={"n": i})
            event = watch.get(timeout=0)
            assert event is not None and (event.kind, event.instance_id) == (EventKind.ADDED, f"i{i}")
        assert watch.stats().lag_count == 20


@pytest.mark.usefixtures("no_poll")
def test_a_requested_resync_wakes_the_watch() -> None:
    with connect(_url()) as registry, registry.watch("svc") as watch:
        registry.register("svc", "a")
        assert watch.get(timeout=0) is not None
        watch.request_resync()
        items = [watch.next_item(10), watch.next_item(10)]
        assert [item.kind for item in items if isinstance(item, Notice)] == [
            NoticeKind.RESYNC_STARTED,
            NoticeKind.RESYNCED,
        ]
        # The new stream pushes as the first did.
        registry.register("svc", "b")
        event = watch.get(timeout=0)
        assert event is not None and event.instance_id == "b" and not event.resync
        assert watch.gap_reasons == ("requested",)


@pytest.mark.usefixtures("no_poll")
def test_a_pushing_stream_that_skips_a_change_is_caught_and_resynced() -> None:
    _missed_creation_is_resynced(SkippingBackend, skip_at=7)


def test_a_bug_met_in_the_writers_thread_breaks_the_watch_not_the_write(monkeypatch: pytest.MonkeyPatch) -> None:
    with connect(_url()) as registry, registry.watch("svc") as watch:
        registry.register("svc", "a")

        def broken(*_: object) -> object:
            raise RuntimeError("a bug in the engine")

        monkeypatch.setattr(watch_engine, "decode_instance", broken)
        lease = registry.register("svc", "b")  # committed, and the write says so
        assert lease.alive and sorted(r.key for r in registry.backend.list("svc/").records) == ["svc/a", "svc/b"]
        assert isinstance(watch.get(10), Event)
        with pytest.raises(WatchBroken, match=r"internal error.*a bug in the engine"):
            watch.get(10)
        assert watch.stats().state == "broken"


def test_a_replayed_delete_is_told_once_when_the_stream_repeats_its_batch() -> None:
    """Found by the soak: in replay a delete of a key never seen is told, but a repeated batch must not repeat it."""
    repeating = next(c.backend for c in CONTROLS if c.expect is None)  # its 20th batch comes twice
    url = _url()
    with connect(url) as writer:
        leases = [writer.register("svc", f"i{i}") for i in range(10)]
        for lease in leases:
            lease.close()  # the 20th batch is the last delete
        with registry_on(repeating, url) as watcher, watcher.watch("svc", since=0) as watch:
            events = collect(watch, lambda e: len(e) >= 20, 10)
            assert watch.get(0.5) is None, "the repeated delete was told again"
    assert [e.kind for e in events] == [EventKind.ADDED] * 10 + [EventKind.REMOVED] * 10
