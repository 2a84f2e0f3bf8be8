"""Property: whatever happens, applying a watch's events to its snapshot gives the store's state.

A hypothesis state machine drives random sequences of define, register,
update, deregister, session expiry, forced gaps and buffer overflows on the
memory backend, with two watchers (one with a tiny buffer, so overflows
happen), and checks convergence and ordering at the end of every run.
"""

from __future__ import annotations

import os
import uuid

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from discovery import Registration, Registry, Watch, connect
from discovery.memory import MemoryBackend
from discovery.testing.checks import assert_ordered, state, wait_converged

IDS = st.sampled_from([f"i{n}" for n in range(6)])
SERVICES = st.sampled_from(["a", "a/b", "c"])
EXAMPLES = int(os.environ.get("DISCOVERY_HYPOTHESIS_EXAMPLES", "500"))


class ConvergenceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        url = f"memory://prop-{uuid.uuid4().hex[:10]}?history_window=8"
        self.writer: Registry = connect(url)
        self.reader: Registry = connect(url)
        self.leases: dict[tuple[str, str], Registration] = {}
        self.watches: list[Watch] = [self.reader.watch(""), self.reader.watch("a", buffer_size=2)]

    @rule(service=SERVICES, instance_id=IDS, port=st.integers(1, 65535))
    def register(self, service: str, instance_id: str, port: int) -> None:
        self.leases[(service, instance_id)] = self.writer.register(service, instance_id, port=port, ttl=30)

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data())
    def update(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.leases)))
        self.leases[key].update(meta={"n": data.draw(st.integers(0, 9))})

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data())
    def deregister(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.leases)))
        self.leases.pop(key).close()

    @rule(service=SERVICES, minimum=st.integers(0, 3))
    def define(self, service: str, minimum: int) -> None:
        self.writer.define(service, min_instances=minimum)

    @rule()
    def expire_sessions(self) -> None:
        backend = self.writer.backend
        assert isinstance(backend, MemoryBackend)
        backend.expire_sessions()

    @rule(which=st.integers(0, 1))
    def force_gap(self, which: int) -> None:
        self.watches[which].request_resync("forced")

    @rule(service=SERVICES, instance_id=IDS)
    def raw_put_and_delete(self, service: str, instance_id: str) -> None:
        key = f"{service}/raw-{instance_id}"
        self.writer.backend.put(key, b"not json", None)
        self.writer.backend.delete(key)

    def teardown(self) -> None:
        try:
            for watch in self.watches:
                events = wait_converged(watch, self.reader, [], 20, quiet=0.02)
                assert_ordered(events)
                assert state(watch.snapshot.apply(events)) == state(self.reader.snapshot(watch.prefix))
        finally:
            for watch in self.watches:
                watch.close()
            self.writer.close()
            self.reader.close()


ConvergenceMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestConvergence = ConvergenceMachine.TestCase
