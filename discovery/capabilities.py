"""Capabilities: what a backend can and cannot do, declared in code.

Each backend declares ``capabilities: ClassVar[frozenset[Capability]]``;
``discovery.connect(url, require={...})`` refuses a backend that lacks one
(:class:`~discovery.errors.CapabilityMissing`), the conformance suite checks
each declaration against behaviour, and the README's capability table is
generated from these members and their descriptions (in ``_DESCRIPTIONS``,
the one place a capability's meaning is written).
"""

from __future__ import annotations

import enum


class Capability(enum.Enum):
    """A guarantee or feature that some backends have and others lack; :attr:`description` says which."""

    EXPIRY_CAUSE = "expiry-cause"
    INTERMEDIATE_VALUES = "intermediate-values"
    ATOMIC_SNAPSHOT = "atomic-snapshot"
    RESUME_FROM_REVISION = "resume-from-revision"
    BATCHED_EXPIRY = "batched-expiry"
    NATIVE_EPHEMERAL = "native-ephemeral"

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
