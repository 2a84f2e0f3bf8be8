"""The conformance suite against the in-memory backend."""

from typing import ClassVar

from discovery.testing.faults import HistoryGapSuite
from discovery.testing.memory import MemoryFixtures, MemoryHistoryFixtures
from discovery.testing.suite import RegistrySuite


class TestMemory(RegistrySuite, MemoryFixtures):
    pass


class TestMemoryHistory(HistoryGapSuite, MemoryHistoryFixtures):
    gap_reason: ClassVar[str] = "history-window"
