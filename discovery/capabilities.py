"""Capabilities: what a backend can and cannot do, declared in code.

Each backend declares ``capabilities: ClassVar[frozenset[Capability]]``;
``discovery.connect(url, require={...})`` refuses a backend that lacks one
(:class:`~discovery.errors.CapabilityMissing`), the conformance suite checks
each declaration against behaviour, and the README's capability table is
generated from these members and their docstrings.
"""

from __future__ import annotations

import enum


class Capability(enum.Enum):
    """A guarantee or feature that some backends have and others lack."""

    EXPIRY_CAUSE = "expiry-cause"
    """REMOVED events tell an expiry from an explicit delete (``Event.expired``)."""

    INTERMEDIATE_VALUES = "intermediate-values"
    """Every update's own value is delivered, even when updates follow each other quickly."""

    ATOMIC_SNAPSHOT = "atomic-snapshot"
    """A listing is one consistent read at one revision."""

    RESUME_FROM_REVISION = "resume-from-revision"
    """A broken stream resumes from a past revision without a re-list (within the server's history)."""

    BATCHED_EXPIRY = "batched-expiry"
    """All instances of an expiring lease or session are removed in one revision, delivered as one batch."""

    NATIVE_EPHEMERAL = "native-ephemeral"
    """The server itself ties instances to a session or lease; no per-key refresh traffic."""

    @property
    def description(self) -> str:
        """One line on what the capability means, for tables and docs."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Capability.EXPIRY_CAUSE: "REMOVED events tell an expiry from an explicit delete (Event.expired)",
    Capability.INTERMEDIATE_VALUES: "every update's own value is delivered, even for rapid updates",
    Capability.ATOMIC_SNAPSHOT: "a listing is one consistent read at one revision",
    Capability.RESUME_FROM_REVISION: "a broken stream resumes from a past revision without a re-list",
    Capability.BATCHED_EXPIRY: "an expiring lease/session removes all its instances in one revision",
    Capability.NATIVE_EPHEMERAL: "the server ties instances to a session or lease; no per-key refreshes",
}
