"""The history checker's resync windows, on small hand-made histories (the soak's controls cover the rest).

A stream that reads values after their notification (ZooKeeper) delivers
some changes after events stamped above their revision; a resync that drops
such a batch must still cover them, and only them.
"""

from __future__ import annotations

from discovery.capabilities import Capability
from discovery.models import Event, EventKind, Instance, Notice, NoticeKind
from discovery.testing.history import Anomaly, History, Observation, WatcherLog, Write, WriteKind, check_history

ZOOKEEPER_LIKE: frozenset[Capability] = frozenset()
ATOMIC: frozenset[Capability] = frozenset({Capability.ATOMIC_SNAPSHOT})


def added(key: str, revision: int, value_revision: int) -> Observation:
    service, _, name = key.rpartition("/")
    return Observation(
        0.0, Event(EventKind.ADDED, service, name, Instance(service, name, revision=value_revision), revision)
    )


def notice(kind: NoticeKind, revision: int) -> Observation:
    return Observation(0.0, Notice(kind, "overflow", revision))


def history(capabilities: frozenset[Capability], *, missed_at: int) -> History:
    """``fast`` took a value 9 revisions late and saw ``s/missed`` come and go; ``slow`` overflowed at 576.

    ``slow`` never saw ``s/missed``: the batch that held it was dropped by the overflow.
    """
    gone = Observation(0.0, Event(EventKind.REMOVED, "s", "missed", None, missed_at + 2))
    fast = WatcherLog(
        "fast",
        (),
        500,
        [
            added("s/late", 561, 552),
            added("s/missed", missed_at + 1, missed_at),
            gone,
            added("s/other", max(576, missed_at + 3), 576),
        ],
    )
    slow = WatcherLog(
        "slow",
        (),
        500,
        [
            added("s/late", 561, 552),
            added("s/other", 576, 576),
            notice(NoticeKind.RESYNC_STARTED, 576),
            notice(NoticeKind.RESYNCED, 600),
            added("s/after", 601, 601),
        ],
    )
    writes = [
        Write("w", WriteKind.REGISTER, "s/late", 552, 1.0),
        Write("w", WriteKind.REGISTER, "s/missed", missed_at, 1.0),
        Write("w", WriteKind.DEREGISTER, "s/missed", None, 2.0),
        Write("w", WriteKind.REGISTER, "s/other", 576, 3.0),
        Write("w", WriteKind.REGISTER, "s/after", 601, 4.0),
    ]
    return History("test", capabilities, writes, [fast, slow])


def reliable(found: list[Anomaly]) -> list[tuple[str, str, int]]:
    return [(a.consumer, a.key, a.revision) for a in found if a.property == "reliable"]


def test_a_resync_covers_a_change_as_late_as_the_stream_delivered_one() -> None:
    # 567 is 9 below the resync's 576: within the lag the run showed (561 - 552).
    assert reliable(check_history(history(ZOOKEEPER_LIKE, missed_at=567))) == []


def test_a_resync_covers_its_own_revision_on_a_stream_that_splits_revisions() -> None:
    assert reliable(check_history(history(ZOOKEEPER_LIKE, missed_at=576))) == []


def test_a_change_older_than_the_lag_is_still_missed() -> None:
    assert reliable(check_history(history(ZOOKEEPER_LIKE, missed_at=560))) == [("slow", "s/missed", 560)]


def test_an_atomic_stream_gets_no_such_slack() -> None:
    assert reliable(check_history(history(ATOMIC, missed_at=567))) == [("slow", "s/missed", 567)]
