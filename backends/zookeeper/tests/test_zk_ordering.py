"""How a batch's read-derived revisions are tightened and sorted (``discovery_zookeeper._stream.order``).

The cases are the interleavings a real server produces when reads run behind
notifications; the server tests reach them only by chance, so they are
spelled out here as data.
"""

from __future__ import annotations

from discovery.backend import Change, ChangeKind
from discovery_zookeeper._stream import Observed, order

PUT, DELETE = ChangeKind.PUT, ChangeKind.DELETE


def put(key: str, revision: int, value: bytes | None = b"{}") -> Observed:
    """An exact put: the value read, with its mzxid."""
    return Observed(Change(PUT, key, value, revision, revision), approximate=False)


def unread_put(key: str, bound: int) -> Observed:
    """A key created and gone before its read: no value, a revision bound."""
    return Observed(Change(PUT, key, None, 0, bound), approximate=True)


def delete(key: str, bound: int) -> Observed:
    """A delete whose revision is the pzxid read after the notification."""
    return Observed(Change(DELETE, key, None, 0, bound), approximate=True)


def shape(changes: list[Change]) -> list[tuple[ChangeKind, str, int]]:
    return [(change.kind, change.key, change.mod_revision) for change in changes]


def test_a_delete_read_late_is_lowered_to_what_follows_it() -> None:
    # x deleted at 10, y created at 11, z created at 13 before the delete was read (pzxid 13).
    assert shape(order([delete("x", 13), put("y", 11), put("z", 13)], {})) == [
        (DELETE, "x", 11),
        (PUT, "y", 11),
        (PUT, "z", 13),
    ]


def test_the_lowest_later_revision_bounds_a_delete() -> None:
    # Clamping to the next change only would leave the delete of k after k's re-creation.
    assert shape(order([delete("k", 20), put("z", 15), put("k", 12)], {"k": 5})) == [
        (DELETE, "k", 12),
        (PUT, "k", 12),
        (PUT, "z", 15),
    ]


def test_a_value_read_ahead_of_later_notifications_is_sorted_after_them() -> None:
    # x set at 10, y created at 11, x set again at 12: the first read of x already sees 12.
    assert shape(order([put("x", 12), put("y", 11)], {})) == [(PUT, "y", 11), (PUT, "x", 12)]


def test_a_key_gone_before_its_read_comes_strictly_before_its_delete() -> None:
    changes = order([unread_put("f", 20 - 1), delete("f", 20)], {})
    assert shape(changes) == [(PUT, "f", 19), (DELETE, "f", 20)]
    assert changes[0].value is None and changes[0].create_revision == 0


def test_a_key_gone_before_its_read_stays_below_its_delete_in_the_same_pzxid() -> None:
    # Both reads saw pzxid 8: the put's bound (7) must stay strictly below the delete.
    assert shape(order([delete("a", 8), unread_put("b", 7), delete("b", 8)], {"a": 3})) == [
        (DELETE, "a", 7),
        (PUT, "b", 7),
        (DELETE, "b", 8),
    ]


def test_an_approximate_change_stays_above_the_keys_previous_batch() -> None:
    last: dict[str, int] = {}
    first = order([unread_put("f", 19)], last)
    assert shape(first) == [(PUT, "f", 19)] and last == {"f": 19}
    # Next batch: f's delete (pzxid 25) is followed by a late exact put of z at 15.
    second = order([delete("f", 25), put("z", 15)], last)
    assert shape(second) == [(PUT, "z", 15), (DELETE, "f", 20)]
    assert last == {"z": 15}


def test_revisions_never_decrease_within_a_batch() -> None:
    observed = [put("a", 30), delete("b", 31), put("c", 29), unread_put("d", 40), delete("d", 41), put("e", 33)]
    revisions = [change.mod_revision for change in order(observed, {})]
    assert revisions == sorted(revisions)
