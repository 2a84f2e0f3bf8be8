"""The conformance suite: the scenarios every backend must pass, as test mixins.

Each scenario states part of the event contract (the README's section) and is
run unchanged against every backend: ``class TestEtcd(RegistrySuite,
EtcdFixtures): pass``. Capabilities decide what a scenario expects, never
whether it runs: a backend that declares ``EXPIRY_CAUSE`` must report it,
one that does not must report ``None``. Scenarios that need a fault only
some deployments can play (a server restart, compaction, a connection loss)
live in :mod:`discovery.testing.faults`. Scenarios fill the ``parity``
fixture (events expected and seen, resyncs), which the plugin writes out as
the parity table's data.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from discovery import (
    AlreadyRegistered,
    Capability,
    EventKind,
    Health,
    Instance,
    InvalidInput,
    InvalidMeta,
    InvalidName,
    InvalidOption,
    InvalidValue,
    NameConflict,
    NotFound,
    NoticeKind,
    Registration,
    Registry,
    available_backends,
    connect,
)
from discovery._validation import MAX_DEPTH, MAX_SEGMENT_LENGTH, VALUE_OVERHEAD
from discovery.backend import Backend
from discovery.testing.checks import (
    CacheProbe,
    assert_ordered,
    collect,
    count,
    drain,
    kinds_by_instance,
    state,
    wait_converged,
)
from discovery.testing.fixtures import RegistryFixtures
from discovery.testing.naive import NaiveRewatchLoop
from discovery.testing.waiting import wait_until

Parity = dict[str, Any]


def _refused(backend: Backend, char: str) -> bool:
    return any(low <= ord(char) <= high for low, high in backend.refused_characters)


def _longest_service(backend: Backend, limit: int, instance_id: str) -> str:
    """The longest service path (up to the core's own limits) whose instance key fits ``limit``."""
    segments: list[str] = []
    while len(segments) < MAX_DEPTH:
        segment = "é" * MAX_SEGMENT_LENGTH
        while segment and backend.key_size("/".join([*segments, segment, instance_id])) > limit:
            segment = segment[:-1]
        if not segment:
            break
        segments.append(segment)
        if len(segment) < MAX_SEGMENT_LENGTH:
            break
    return "/".join(segments)


def _grow(service: str) -> str:
    """``service`` with one more character, in its last segment or a new one."""
    *parents, last = service.split("/")
    if len(last) < MAX_SEGMENT_LENGTH:
        return "/".join([*parents, last + "é"])
    return f"{service}/é"


class RegistrySuite(RegistryFixtures):
    """Scenarios every backend must pass."""

    # -- the API -------------------------------------------------------------

    def test_register_list_and_close(self, registry: Registry, other: Registry) -> None:
        lease = registry.register("buzz/buzzadmin/api", "host-1", address="10.0.0.5", port=8080, meta={"v": "1"})
        assert lease.alive
        seen = other.instances("buzz/buzzadmin/api")
        assert [(i.id, i.address, i.port, dict(i.meta)) for i in seen] == [("host-1", "10.0.0.5", 8080, {"v": "1"})]
        assert seen[0].revision > 0
        lease.close()
        assert not lease.alive
        assert other.instances("buzz/buzzadmin/api") == []

    def test_update_emits_one_updated(self, registry: Registry, other: Registry) -> None:
        lease = registry.register("svc", "a", port=1, ttl=self.ttl * 5)
        with other.watch("svc") as watch:
            lease.update(meta={"version": "2"}, port=2)
            events = collect(watch, lambda e: len(e) >= 1, self.timeout)
            events += drain(watch)
        assert [e.kind for e in events] == [EventKind.UPDATED]
        assert events[0].instance is not None
        assert (events[0].instance.port, dict(events[0].instance.meta)) == (2, {"version": "2"})

    def test_same_registry_replaces_other_registrant_conflicts(self, registry: Registry, other: Registry) -> None:
        first = registry.register("svc", "a", port=1)
        again = registry.register("svc", "a", port=2)
        assert again is first
        assert [i.port for i in other.instances("svc")] == [2]
        with pytest.raises(AlreadyRegistered) as caught:
            other.register("svc", "a", port=3)
        assert (caught.value.service, caught.value.instance_id) == ("svc", "a")
        assert [i.port for i in other.instances("svc")] == [2]

    def test_deregister_from_anywhere_and_not_found(self, registry: Registry, other: Registry) -> None:
        registry.register("svc", "a")
        other.deregister("svc", "a")
        assert registry.instances("svc") == []
        with pytest.raises(NotFound) as caught:
            other.deregister("svc", "a")
        assert caught.value.instance_id == "a"
        with pytest.raises(NotFound):
            other.undefine("svc")

    def test_status_tree(self, registry: Registry) -> None:
        registry.define("buzz", min_instances=1)
        registry.define("buzz/buzzadmin/api", min_instances=2)
        registry.define("buzz/buzzadmin/web", min_instances=1)
        registry.register("buzz", "gateway")
        registry.register("buzz/buzzadmin/api", "a1")
        registry.register("buzz/buzzadmin/web", "w1")
        tree = registry.status("buzz")
        api = tree.find("buzz/buzzadmin/api")
        assert api is not None and (api.health, api.reason, api.instances) == (Health.DEGRADED, "below-minimum", 1)
        assert tree.health is Health.DEGRADED and tree.reason == "subtree"
        registry.register("buzz/buzzadmin/api", "a2")
        assert registry.status("buzz").health is Health.UP
        registry.deregister("buzz", "gateway")
        down = registry.status("buzz")
        assert (down.health, down.reason) == (Health.DOWN, "no-instances")
        web = down.find("buzz/buzzadmin/web")
        assert web is not None and (web.health, web.reason) == (Health.DOWN, "parent-down")
        assert registry.status("buzz/buzzadmin/web").reason == "parent-down"
        registry.undefine("buzz")
        assert registry.definitions("buzz") == {"buzz/buzzadmin/api": 2, "buzz/buzzadmin/web": 1}

    def test_bad_input_is_refused_and_changes_nothing(self, registry: Registry) -> None:
        lease = registry.register("svc/a", "keep", port=80, meta={"k": "v"})
        registry.define("svc/a", min_instances=1)
        before = (registry.snapshot(), registry.definitions())
        bad_names = ["", "a/../b", "a//b", "/a", "a/", "_reserved", "a/_x", "x" * 129, "a b", "a\nb", "a\x00b", "a*b"]
        for name in bad_names:
            with pytest.raises(InvalidName) as caught:
                registry.register(name, "i")
            assert caught.value.field == "service"
            with pytest.raises(InvalidName):
                registry.define(name)
            with pytest.raises(InvalidName):
                registry.instances(name)
        with pytest.raises(InvalidName):
            registry.register("/".join(["s"] * 17), "i")
        for instance_id in ["", "a/b", "..", "_x", "sp ace", "x" * 129]:
            with pytest.raises(InvalidName) as caught:
                registry.register("svc/a", instance_id)
            assert caught.value.field == "instance_id"
            with pytest.raises(InvalidName):
                registry.deregister("svc/a", instance_id)
        for port in [0, 65536, -1, "80", True, 1.5]:
            with pytest.raises(InvalidValue) as bad_port:
                registry.register("svc/a", "keep", port=port)  # type: ignore[arg-type]
            assert bad_port.value.field == "port"
        for ttl in [0, -1, float("inf"), float("nan"), 10**9, "10"]:
            with pytest.raises(InvalidValue) as bad_ttl:
                registry.register("svc/a", "keep", ttl=ttl)  # type: ignore[arg-type]
            assert bad_ttl.value.field == "ttl"
        for meta in [{"x": object()}, {1: "a"}, ["a"], {"big": "x" * (70 * 1024)}, {"n": float("nan")}]:
            with pytest.raises(InvalidMeta) as bad_meta:
                registry.register("svc/a", "keep", meta=meta)  # type: ignore[arg-type]
            assert bad_meta.value.field == "meta"
            with pytest.raises(InvalidMeta):
                lease.update(meta=meta)  # type: ignore[arg-type]
        for address in ["", "a b", "x" * 300, 5]:
            with pytest.raises(InvalidValue):
                registry.register("svc/a", "keep", address=address)  # type: ignore[arg-type]
        for minimum in [-1, "2", 1.5, True]:
            with pytest.raises(InvalidValue):
                registry.define("svc/a", min_instances=minimum)  # type: ignore[arg-type]
        with pytest.raises(InvalidValue):
            registry.watch("svc", buffer_size=0)
        with pytest.raises(InvalidValue):
            registry.watch("svc", since=-1)
        with pytest.raises(InvalidName):
            registry.watch("a/../b")
        with pytest.raises(InvalidInput):
            registry.status("a b")
        assert (registry.snapshot(), registry.definitions()) == before
        assert lease.alive and dict(lease.instance.meta) == {"k": "v"}

    def test_name_is_either_an_instance_or_a_service(self, registry: Registry, other: Registry) -> None:
        """Keys form a tree: a name under one parent is an instance id or a sub-service, never both."""
        sub = registry.register("shop/api", "x", port=1)
        registry.define("shop/web")
        before = other.snapshot("shop")
        with pytest.raises(NameConflict) as below:
            registry.register("shop", "api", port=2)
        assert (below.value.field, below.value.key, below.value.conflict) == ("instance_id", "shop/api", "shop/api/x")
        with pytest.raises(NameConflict) as defined:
            registry.register("shop", "web")
        assert defined.value.conflict == "shop/web/_definition"
        assert other.snapshot("shop").instances == before.instances
        sub.close()
        registry.undefine("shop/web")
        # Once nothing lives below it, the name is free to be an instance id.
        wait_until(lambda: not other.instances("shop/api"), self.timeout, message="shop/api/x gone")
        leaf = registry.register("shop", "api", port=3)
        with pytest.raises(NameConflict) as above:
            registry.register("shop/api", "y")
        assert (above.value.field, above.value.conflict) == ("service", "shop/api")
        with pytest.raises(NameConflict):
            registry.define("shop/api")
        with pytest.raises(NameConflict):
            other.register("shop/api/deeper", "z")
        assert [(i.service, i.id, i.port) for i in other.snapshot("shop").instances] == [("shop", "api", 3)]
        assert other.definitions("shop") == {}
        assert leaf.alive

    def test_backend_limits_are_known_to_validation(self, registry: Registry, url: str) -> None:
        """Each backend's own limits are refused before sending, and the declared limits are real."""
        backend = registry.backend
        candidates = ("é", "中", "\U0001d518", "\U00020000", "\ufb01")
        for char in candidates:
            if _refused(backend, char):
                with pytest.raises(InvalidName) as refused:
                    registry.register("chars", f"a{char}b")
                assert refused.value.field == "instance_id" and f"U+{ord(char):04X}" in refused.value.reason
                with pytest.raises(InvalidName):
                    registry.register(f"chars/{char}", "a")
        accepted = [c for c in candidates if not _refused(backend, c)]
        for char in accepted:
            registry.register("chars", f"a{char}b")
        assert sorted(i.id for i in registry.instances("chars")) == sorted(f"a{c}b" for c in accepted)
        # The longest service path the backend takes works end to end; one more character is refused.
        service = _longest_service(backend, backend.max_key_bytes, "inst")
        lease = registry.register(service, "inst", port=1)
        assert [i.id for i in registry.instances(service)] == ["inst"]
        with registry.watch(service) as watch:
            assert [i.id for i in watch.snapshot.instances] == ["inst"]
        lease.close()
        if len(service) < MAX_DEPTH * (MAX_SEGMENT_LENGTH + 1) - 1:
            longer = _grow(service)
            with pytest.raises(InvalidName) as too_long:
                registry.register(longer, "inst")
            assert str(backend.max_key_bytes) in too_long.value.reason
            with pytest.raises(InvalidName):
                registry.watch(longer + "/x")
        # The largest meta the backend declares it can store is stored and read back whole.
        cap = backend.max_value_bytes - VALUE_OVERHEAD
        with connect(url, meta_limit=cap) as big:
            blob = "x" * (cap - len('{"blob":""}'))
            held = big.register("big", "one", address="a" * 255, port=65535, meta={"blob": blob})
            assert [len(i.meta["blob"]) for i in registry.instances("big")] == [len(blob)]
            held.close()
            assert registry.instances("big") == []
        with pytest.raises(InvalidOption) as too_big:
            connect(url, meta_limit=cap + 1)
        assert too_big.value.option == "meta_limit"

    def test_raising_listener_does_not_stop_reregistration(self, registry: Registry, other: Registry) -> None:
        """A listener that raises is logged and ignored: the lost instance still comes back."""
        calls: list[bool] = []

        def broken(_registration: Registration, alive: bool) -> None:
            calls.append(alive)
            raise RuntimeError("a bug in the user's listener")

        lease = registry.register("listen", "a", ttl=self.ttl)
        plain = registry.register("listen", "b", ttl=self.ttl)
        lease.on_change(broken)
        self.lose_session(registry)
        wait_until(lambda: False in calls, self.timeout, message="the listener heard the loss")
        wait_until(
            lambda: lease.alive and plain.alive and [i.id for i in other.instances("listen")] == ["a", "b"],
            self.timeout,
            message="both instances re-registered",
        )
        assert calls[-1] is True
        # Lost a second time: the keeper and the keep-alive still run.
        self.lose_session(registry)
        wait_until(lambda: calls.count(True) >= 2 and lease.alive, self.timeout, message="re-registered again")
        wait_until(
            lambda: [i.id for i in other.instances("listen")] == ["a", "b"], self.timeout, message="both on the server"
        )

    def test_watch_follows_service_definitions(self, registry: Registry, other: Registry) -> None:
        """Definitions are not events, but a watch keeps them current (``tree --watch`` redraws on them)."""
        registry.define("defs/web", min_instances=1)
        with other.watch("defs") as watch:
            assert watch.definitions == {"defs/web": 1}
            registry.define("defs/api", min_instances=2)
            wait_until(lambda: watch.definitions == {"defs/web": 1, "defs/api": 2}, self.timeout, message="defined")
            registry.undefine("defs/web")
            wait_until(lambda: watch.definitions == {"defs/api": 2}, self.timeout, message="undefined")
            registry.register("defs/api", "a")
            events = collect(watch, lambda e: len(e) >= 1, self.timeout)
            assert [(e.kind, e.instance_id) for e in events + drain(watch)] == [(EventKind.ADDED, "a")]

    def test_prefix_is_a_path_not_a_string_prefix(self, registry: Registry, other: Registry) -> None:
        with other.watch("buzz") as watch:
            registry.register("buzzer", "x")
            registry.register("buzz/api", "y")
            registry.register("buzz", "z")
            events = collect(watch, lambda e: len(e) >= 2, self.timeout)
            events += drain(watch)
        assert sorted(f"{e.service}/{e.instance_id}" for e in events) == ["buzz/api/y", "buzz/z"]

    # -- the event contract --------------------------------------------------

    def test_seed_story(self, registry: Registry, url: str, parity: Parity) -> None:
        """100 instances with a ttl, the registrant dies: exactly 100 ADDED and 100 REMOVED."""
        ids = [f"n{i}" for i in range(100)]
        with registry.watch("nodes") as watch:
            registrant = self.start_registrant(url, "nodes", ids, self.ttl)
            events = collect(watch, lambda e: count(e, EventKind.ADDED) >= 100, self.timeout, message="100 ADDED")
            registrant.kill()
            collect(watch, lambda e: count(e, EventKind.REMOVED) >= 100, self.timeout, events, "100 REMOVED")
            events += drain(watch)
            parity.update(expected=200, seen=len(events), resyncs=watch.resyncs)
        assert_ordered(events)
        assert (count(events, EventKind.ADDED), count(events, EventKind.REMOVED)) == (100, 100)
        assert all(kinds == [EventKind.ADDED, EventKind.REMOVED] for kinds in kinds_by_instance(events).values())
        expired = {e.expired for e in events if e.kind is EventKind.REMOVED}
        assert expired == ({True} if Capability.EXPIRY_CAUSE in registry.capabilities else {None})

    def test_naive_rewatch_loop_loses_events(self, registry: Registry, url: str, parity: Parity) -> None:
        """The negative control: a new watch per event, no resume point, misses events."""
        ids = [f"n{i}" for i in range(100)]
        naive = NaiveRewatchLoop(registry, "nodes").start()
        with registry.watch("nodes") as complete:
            registrant = self.start_registrant(url, "nodes", ids, self.ttl)
            events = collect(complete, lambda e: count(e, EventKind.ADDED) >= 100, self.timeout)
            registrant.kill()
            collect(complete, lambda e: count(e, EventKind.REMOVED) >= 100, self.timeout, events)
        seen = naive.stop(self.timeout)
        parity.update(expected=200, seen=len(events), naive_seen=len(seen))
        assert len(events) == 200
        assert len(seen) < 200, "the naive loop saw every event: the control proves nothing"

    def test_flapping_register_then_deregister(self, registry: Registry, other: Registry, parity: Parity) -> None:
        """500 instances registered and at once deregistered: every ADDED and REMOVED, in order."""
        with other.watch("flap") as watch:
            for i in range(500):
                registry.register("flap", f"i{i}").close()
            events = collect(watch, lambda e: count(e, EventKind.REMOVED) >= 500, self.timeout, message="500 REMOVED")
            events += drain(watch)
            parity.update(expected=1000, seen=len(events), resyncs=watch.resyncs)
        assert_ordered(events)
        history = kinds_by_instance(events)
        assert len(history) == 500
        assert all(kinds == [EventKind.ADDED, EventKind.REMOVED] for kinds in history.values())

    def test_shared_session_expiry(self, registry: Registry, url: str, parity: Parity) -> None:
        """Many instances of one lease/session expire at once: nothing lost, one batch where declared."""
        ids = [f"s{i}" for i in range(50)]
        with registry.watch("shared") as watch:
            registrant = self.start_registrant(url, "shared", ids, self.ttl)
            collect(watch, lambda e: count(e, EventKind.ADDED) >= 50, self.timeout)
            registrant.kill()
            first = watch.get_batch(self.timeout)
            removed = collect(watch, lambda e: count(e, EventKind.REMOVED) >= 50, self.timeout, list(first))
            parity.update(expected=50, seen=count(removed, EventKind.REMOVED), resyncs=watch.resyncs)
        assert count(removed, EventKind.REMOVED) == 50
        if Capability.BATCHED_EXPIRY in registry.capabilities:
            assert len(first) == 50 and len({e.revision for e in first}) == 1

    def test_expiry_cause_matches_capability(self, registry: Registry, other: Registry) -> None:
        with other.watch("cause") as watch:
            registry.register("cause", "deleted").close()
            events = collect(watch, lambda e: count(e, EventKind.REMOVED) >= 1, self.timeout)
        removed = [e for e in events if e.kind is EventKind.REMOVED]
        expected = False if Capability.EXPIRY_CAUSE in registry.capabilities else None
        assert [e.expired for e in removed] == [expected]

    def test_intermediate_values_match_capability(self, registry: Registry, other: Registry) -> None:
        lease = registry.register("values", "v", meta={"n": 0}, ttl=self.ttl * 5)
        with other.watch("values") as watch:
            for n in range(1, 51):
                lease.update(meta={"n": n})
            events = collect(
                watch,
                lambda e: any(x.instance is not None and x.instance.meta.get("n") == 50 for x in e),
                self.timeout,
            )
            events += drain(watch)
        values = [int(e.instance.meta["n"]) for e in events if e.instance is not None]
        assert values == sorted(values) and values[-1] == 50
        if Capability.INTERMEDIATE_VALUES in registry.capabilities:
            assert values == list(range(1, 51))

    def test_slow_consumer_gets_complete_stream_or_resync(
        self, registry: Registry, other: Registry, parity: Parity
    ) -> None:
        """Thousands of changes while the watcher reads nothing: complete, or a resync that converges."""
        slow_cache = other.cache("slow", buffer_size=100)
        with other.watch("slow", buffer_size=100) as watch, CacheProbe(other, "slow") as probe, slow_cache:
            # A subscriber slower than the writes holds the cache's thread back: its watch overflows too.
            slow_cache.subscribe(lambda _event: time.sleep(0.001))
            leases = [registry.register("slow", f"i{i}", ttl=self.ttl * 5) for i in range(300)]
            for n, lease in enumerate(leases):
                lease.update(meta={"n": n})
            for lease in leases[::2]:
                lease.close()
            events = wait_converged(watch, other, [], self.timeout)
            parity.update(expected=750, seen=len(events), resyncs=watch.resyncs)
            probe.assert_converged(other, self.timeout)
            assert slow_cache.wait_for(
                lambda cache: state(cache.snapshot()) == state(other.snapshot("slow")), self.timeout
            ), "the slow subscriber's cache did not converge"
        assert_ordered(events)
        assert watch.resyncs >= 1 and "overflow" in watch.gap_reasons
        assert len(events) < 750

    def test_foreign_and_corrupt_keys_do_not_kill_the_watch(self, registry: Registry) -> None:
        backend = registry.backend
        with registry.watch() as watch:
            backend.put("nodes/n0", b"1", None)
            backend.put("nodes/n1", b"\xff\xfe not utf-8", None)
            backend.put("lonely", b"top-level key, no service", None)
            backend.put("a/_weird/b", b"{}", None)
            backend.put("nodes/n2", b'{"address": 5, "port": "x", "meta": [1]}', None)
            registry.register("after", "ok")
            events = collect(watch, lambda e: any(x.service == "after" for x in e), self.timeout)
        by_id = {e.instance_id: e for e in events}
        assert set(by_id) == {"n0", "n1", "n2", "ok"}
        n0 = by_id["n0"].instance
        assert n0 is not None and dict(n0.meta) == {"raw": "1"} and n0.service == "nodes"
        n2 = by_id["n2"].instance
        assert n2 is not None and (n2.address, n2.port, dict(n2.meta)) == (None, None, {"raw": [1]})
        assert [i.id for i in registry.instances("nodes")] == ["n0", "n1", "n2"]

    def test_deleted_and_recreated_with_same_value(self, registry: Registry) -> None:
        backend = registry.backend
        backend.put("same/k", b'{"port": 1}', None)
        with registry.watch("same") as watch:
            backend.delete("same/k")
            backend.put("same/k", b'{"port": 1}', None)
            events = collect(watch, lambda e: len(e) >= 2, self.timeout)
            events += drain(watch)
        assert [e.kind for e in events] == [EventKind.REMOVED, EventKind.ADDED]

    def test_resync_without_change_emits_nothing(self, registry: Registry) -> None:
        for i in range(20):
            registry.register("quiet", f"i{i}")
        with registry.watch("quiet") as watch:
            watch.request_resync()
            deadline = time.monotonic() + self.timeout
            while watch.resyncs < 1 and time.monotonic() < deadline:
                assert watch.get(0.05) is None
            assert watch.resyncs == 1
            assert drain(watch) == []

    def test_resync_over_instances_kept_alive_by_another_client_emits_nothing(
        self, registry: Registry, other: Registry
    ) -> None:
        """Keep-alive traffic (etcd v2 refreshes move modifiedIndex) is not a change."""
        for i in range(20):
            registry.register("alive", f"i{i}", ttl=self.ttl)
        # On an ensemble the other client may read from a member that has not
        # applied every create yet; it would rightly see them as events.
        wait_until(lambda: len(other.instances("alive")) == 20, self.timeout, message="all 20 visible to the other")
        with other.watch("alive") as watch:
            deadline = time.monotonic() + 3 * self.ttl
            while time.monotonic() < deadline:
                assert watch.get(0.1) is None
            watch.request_resync()
            while watch.resyncs < 1:
                assert watch.get(0.05) is None
            assert drain(watch) == []

    def test_resync_emits_the_minimal_difference(self, registry: Registry, other: Registry) -> None:
        leases = {i: registry.register("diff", f"i{i}", meta={"n": 0}) for i in range(10)}
        with other.watch("diff", buffer_size=1) as watch:
            watch.request_resync()
            leases[0].close()
            leases[1].update(meta={"n": 1})
            registry.backend.delete("diff/i2")
            registry.backend.put("diff/i2", b'{"meta": {"n": 2}}', None)
            registry.register("diff", "new")
            events = wait_converged(watch, other, [], self.timeout)
        resynced = [e for e in events if e.resync]
        for event in resynced:
            assert event.instance_id in {"i0", "i1", "i2", "new"}, f"unchanged instance in resync: {event}"

    def test_replay_since_matches_capability(self, registry: Registry) -> None:
        lease = registry.register("replay", "a", meta={"n": 0}, ttl=self.ttl * 5)
        since = registry.snapshot("replay").revision
        for n in range(1, 6):
            lease.update(meta={"n": n})
        registry.register("replay", "b")
        with registry.watch("replay", since=since) as watch:
            events = collect(
                watch,
                lambda e: {x.instance_id for x in e} >= {"a", "b"} and count(e, EventKind.ADDED) >= 1,
                self.timeout,
            )
            events += drain(watch)
        if Capability.RESUME_FROM_REVISION in registry.capabilities:
            assert watch.resyncs == 0
            assert [(e.instance_id, e.kind) for e in events] == [("a", EventKind.ADDED)] + [
                ("a", EventKind.UPDATED)
            ] * 4 + [("b", EventKind.ADDED)]
        else:
            assert watch.resyncs >= 1 and all(e.resync for e in events)
        final = {e.instance_id: e.instance for e in events}
        assert final["a"] is not None and final["a"].meta.get("n") == 5

    def test_lost_session_is_reregistered(self, registry: Registry, other: Registry, parity: Parity) -> None:
        """The server drops the registrant's session: its instances, and only its, go; then come back."""
        survivor = other.register("lost", "theirs", ttl=self.ttl * 5)
        lease = registry.register("lost", "ours", meta={"v": 1}, ttl=self.ttl)
        states: list[bool] = []
        lease.on_change(lambda _registration, alive: states.append(alive))
        with other.watch("lost") as watch, CacheProbe(other, "lost") as probe:
            lease.update(meta={"v": 2})
            self.lose_session(registry)
            events = collect(
                watch,
                lambda e: [x.kind for x in e if x.instance_id == "ours"][-2:] == [EventKind.REMOVED, EventKind.ADDED],
                self.timeout,
                message="ours REMOVED then ADDED",
            )
            parity.update(expected=3, seen=len(events), resyncs=watch.resyncs)
            probe.assert_converged(other, self.timeout)
        assert all(e.instance_id == "ours" for e in events)
        readded = events[-1].instance
        assert readded is not None and dict(readded.meta) == {"v": 2}
        assert False in states and lease.alive
        assert survivor.alive and [i.id for i in other.instances("lost")] == ["ours", "theirs"]

    def test_register_many_writes_batches_all_or_none_and_keeps_them(self, registry: Registry, other: Registry) -> None:
        """A bulk registration: every instance ADDED, batches all or none, kept alive and restored like one."""
        batch = registry.backend.max_batch
        count = batch + batch // 2
        instances = [Instance("bulk", f"i{n}", "127.0.0.1", 1000 + n, {"n": n}) for n in range(count)]
        held = other.register("bulk", f"i{count + batch - 1}", ttl=self.ttl * 10)
        with other.watch("bulk") as watch:
            made = registry.register_many(instances, ttl=self.ttl)
            assert [r.instance_id for r in made] == [i.id for i in instances]
            assert all(r.alive and r.instance.revision > 0 for r in made)
            events = collect(watch, lambda e: len(e) >= count, self.timeout, message=f"{count} ADDED")
            assert {e.instance_id for e in events} == {i.id for i in instances}
            assert all(e.kind is EventKind.ADDED for e in events)
            assert [dict(i.meta)["n"] for i in other.instances("bulk") if i.id != held.instance_id] == sorted(
                range(count), key=lambda n: f"i{n}"
            )
            # A batch holding an id another registrant has: refused whole, nothing of it stays.
            clash = [Instance("bulk", f"j{n}") for n in range(3)] + [Instance("bulk", held.instance_id)]
            with pytest.raises(AlreadyRegistered):
                registry.register_many(clash, ttl=self.ttl)
            wait_until(
                lambda: not any(i.id.startswith("j") for i in other.instances("bulk")),
                self.timeout,
                message="nothing of the refused batch stays",
            )
            self.lose_session(registry)
            collect(
                watch,
                lambda e: sum(x.kind is EventKind.ADDED and x.instance_id == "i0" for x in e) >= 2,
                self.timeout,
                events,
                message="the batch expired and came back",
            )
            wait_until(
                lambda: len([i for i in other.instances("bulk") if i.id.startswith("i")]) == count + 1,
                self.timeout,
                message="every instance of the batch came back",
            )
            assert all(r.alive for r in made)

    def test_watcher_session_loss_keeps_the_watch(self, registry: Registry, other: Registry) -> None:
        """The watcher's own session is dropped: its watch goes on, its own instance comes back."""
        own = other.register("wlost", "watcher", ttl=self.ttl)
        with other.watch("wlost") as watch, CacheProbe(other, "wlost") as probe:
            self.lose_session(other)
            registry.register("wlost", "after")
            events = collect(
                watch,
                lambda e: (
                    any(x.instance_id == "after" for x in e)
                    and [x.kind for x in e if x.instance_id == "watcher"][-1:] == [EventKind.ADDED]
                ),
                self.timeout,
                message="the other's instance and our own re-registration",
            )
            events = wait_converged(watch, other, events, self.timeout)
            probe.assert_converged(other, self.timeout)
        assert own.alive
        assert [i.id for i in other.instances("wlost")] == ["after", "watcher"]

    def test_random_operations_converge(self, registry: Registry, other: Registry) -> None:
        rng = random.Random(7)
        leases: dict[str, Any] = {}
        with other.watch("rand", buffer_size=64) as watch, CacheProbe(other, "rand") as probe:
            for step in range(300):
                instance_id = f"i{rng.randrange(20)}"
                action = rng.random()
                if instance_id in leases and action < 0.35:
                    leases.pop(instance_id).close()
                elif instance_id in leases and action < 0.8:
                    leases[instance_id].update(meta={"step": step})
                elif instance_id not in leases:
                    leases[instance_id] = registry.register("rand", instance_id, meta={"step": step})
                if step % 97 == 0:
                    watch.request_resync()
                    probe.cache.request_resync()
            events = wait_converged(watch, other, [], self.timeout)
            probe.assert_converged(other, self.timeout)
        assert_ordered(events)
        assert state(watch.snapshot.apply(events)) == state(other.snapshot("rand"))

    def test_cache_answers_from_memory_and_follows_the_store(self, registry: Registry, other: Registry) -> None:
        """A cache: lookups from memory, every change applied before its subscribers hear it, status as the store's."""
        registry.define("cache/api", 2)
        kept = registry.register("cache/api", "a", address="10.0.0.1", port=80, ttl=self.ttl * 20)
        with CacheProbe(other, "cache") as probe:
            cache = probe.cache
            assert cache.ready and cache.connected and cache.wait_ready(self.timeout)
            assert [i.id for i in cache.instances("cache/api")] == ["a"]
            seen_by_subscriber: list[list[str]] = []
            cache.subscribe(lambda _event: seen_by_subscriber.append([i.id for i in cache.instances("cache/api")]))
            cache.subscribe(lambda _event: 1 / 0)  # a raising subscriber changes nothing
            registry.register("cache/api", "b", ttl=self.ttl * 20)
            kept.update(meta={"v": 2})
            registry.register("cache/web", "w", ttl=self.ttl * 20)
            updated = lambda c: len(c.services()) == 2 and bool(c.instances("cache/api")[0].meta)  # noqa: E731
            assert cache.wait_for(updated, self.timeout)
            assert ["a", "b"] in seen_by_subscriber, "a subscriber runs after the cache applied the event"
            assert cache.status() == other.status("cache")
            kept.close()
            assert cache.wait_for(lambda c: [i.id for i in c.instances("cache/api")] == ["b"], self.timeout)
            assert cache.status("cache/api") == other.status("cache/api")
            cache.request_resync("suite")
            probe.assert_converged(other, self.timeout)
            kinds = [n.kind for n in probe.notices]
            assert kinds[-2:] == [NoticeKind.RESYNC_STARTED, NoticeKind.RESYNCED], kinds
        assert cache.closed and not cache.connected

    def test_connect_by_url_alone(self, url: str) -> None:
        with connect(url) as registry:
            assert registry.backend.name in available_backends()
            assert registry.snapshot().instances == ()
