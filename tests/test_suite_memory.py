"""The conformance suite against the in-memory backend."""

from discovery.testing.memory import MemoryFixtures
from discovery.testing.suite import RegistrySuite


class TestMemory(RegistrySuite, MemoryFixtures):
    pass
