"""The backend contract checks against the in-memory backend, and broken backends they must catch."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import ClassVar, TypeVar

import pytest

from discovery.backend import Backend, Listing, Session, Target
from discovery.capabilities import Capability
from discovery.errors import DiscoveryError
from discovery.memory import MemoryBackend
from discovery.testing.contract import (
    BackendContract,
    BackendMaker,
    check_after_close,
    check_atomic_snapshot,
    check_foreign_session,
    check_native_ephemeral,
    check_resume,
    maker_from_url,
)


class TestMemoryContract(BackendContract):
    @pytest.fixture
    def backend_maker(self) -> BackendMaker:
        return maker_from_url(f"memory://contract-{uuid.uuid4().hex[:12]}/root")


_S = TypeVar("_S", bound=Session)


class _NotDeclaringNativeEphemeral(MemoryBackend):
    capabilities: ClassVar[frozenset[Capability]] = MemoryBackend.capabilities - {Capability.NATIVE_EPHEMERAL}


class _RefreshingKeys(MemoryBackend):
    """Declares NATIVE_EPHEMERAL, yet rewrites each key of a session every third of its ttl, as per-key refreshes do."""

    def put(self, key: str, value: bytes, session: Session | None) -> int:
        revision = super().put(key, value, session)
        if session is not None:
            threading.Thread(target=self._refresh, args=(key, value, session), daemon=True).start()
        return revision

    def _refresh(self, key: str, value: bytes, session: Session) -> None:
        stop = threading.Event()
        while not stop.wait(session.ttl / 3) and session.alive and not self._closed:
            try:
                super().put(key, value, session)
            except DiscoveryError:
                return


class _NotDeclaringResume(MemoryBackend):
    capabilities: ClassVar[frozenset[Capability]] = MemoryBackend.capabilities - {Capability.RESUME_FROM_REVISION}


class _StaleListing(MemoryBackend):
    """Lists at the revision before the store's: a listing no longer covers its records."""

    def list(self, prefix: str) -> Listing:
        listing = super().list(prefix)
        return Listing(listing.revision - 1, listing.records)


class _TornListing(MemoryBackend):
    """Declares ATOMIC_SNAPSHOT, but reads its records, then the revision after more writes (like many reads)."""

    def list(self, prefix: str) -> Listing:
        listing = super().list(prefix)
        with self.store.condition:
            self.store.condition.wait_for(lambda: self.store.revision > listing.revision, timeout=0.5)
            return Listing(self.store.revision, listing.records)


class _AnyInstanceSession(MemoryBackend):
    """Takes a memory session of any backend instance: who opened it goes unchecked."""

    def _own_session(self, session: Session, kind: type[_S]) -> _S:
        if isinstance(session, kind):
            return session
        return super()._own_session(session, kind)


class _OpenAfterClose(MemoryBackend):
    """Forgets that it was closed: lists and writes on."""

    def close(self) -> None:
        super().close()
        self._closed = False


def _maker(cls: type[MemoryBackend]) -> BackendMaker:
    name = f"broken-{uuid.uuid4().hex[:12]}"
    return lambda: cls(Target("memory", ((name, 0),), "/root", {"history_window": 1000}))


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        (_NotDeclaringNativeEphemeral, lambda maker: check_native_ephemeral(maker, timeout=2.0)),
        (_RefreshingKeys, check_native_ephemeral),
        (_NotDeclaringResume, check_resume),
        (_StaleListing, check_atomic_snapshot),
        (_TornListing, check_atomic_snapshot),
        (_AnyInstanceSession, check_foreign_session),
        (_OpenAfterClose, check_after_close),
    ],
    ids=[
        "native-undeclared",
        "native-but-refreshing",
        "resume-undeclared",
        "stale-listing",
        "torn-listing",
        "any-instance-session",
        "open-after-close",
    ],
)
def test_the_contract_catches_a_broken_backend(
    broken: type[MemoryBackend], check: Callable[[Callable[[], Backend]], None]
) -> None:
    with pytest.raises(AssertionError):
        check(_maker(broken))
