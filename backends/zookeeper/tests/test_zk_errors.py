"""The translation table covers every exception kazoo defines, and translations chain the original."""

from __future__ import annotations

import inspect

import pytest
from kazoo import exceptions as kz
from kazoo.handlers.threading import KazooTimeoutError

import discovery_zookeeper
from discovery.errors import (
    AuthenticationFailed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    DiscoveryError,
    SessionExpired,
)
from discovery_zookeeper._errors import ERRORS, TRANSLATIONS


def _kazoo_exception_classes() -> list[type[BaseException]]:
    defined: set[type[BaseException]] = set()
    for value in vars(kz).values():
        if (
            inspect.isclass(value)
            and issubclass(value, BaseException)
            and issubclass(value, kz.KazooException)
            and value.__module__ == kz.__name__
        ):
            defined.add(value)
    return sorted(defined, key=lambda kind: kind.__name__)


def test_kazoo_defines_the_classes_the_check_walks() -> None:
    names = {kind.__name__ for kind in _kazoo_exception_classes()}
    assert {"ConnectionLoss", "SessionExpiredError", "NoNodeError", "ConnectionDropped", "SASLException"} <= names


@pytest.mark.parametrize("kind", [*_kazoo_exception_classes(), KazooTimeoutError], ids=lambda kind: kind.__name__)
def test_every_kazoo_exception_has_a_row(kind: type[BaseException]) -> None:
    target = ERRORS.lookup(kind)
    assert target is not None, f"no translation for {kind.__module__}.{kind.__name__}"
    assert issubclass(target, DiscoveryError)


def test_every_direct_kazoo_exception_subclass_has_its_own_row() -> None:
    # The KazooException row catches kazoo's own bare raises; a new direct subclass must get a deliberate row.
    direct = [kind for kind in _kazoo_exception_classes() if kind.__bases__ == (kz.KazooException,)]
    assert direct and all(kind in TRANSLATIONS for kind in direct)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (kz.ConnectionLoss, BackendUnavailable),
        (kz.ConnectionClosedError, BackendUnavailable),
        (kz.SessionExpiredError, SessionExpired),
        (kz.NoAuthError, AuthenticationFailed),
        (kz.AuthFailedError, AuthenticationFailed),
        (KazooTimeoutError, BackendTimeout),
        (kz.OperationTimeoutError, BackendTimeout),
        (kz.NoNodeError, BackendError),
        (kz.NodeExistsError, BackendError),
        (kz.BadVersionError, BackendError),
        (kz.NotEmptyError, BackendError),
        (kz.NoWatcherError, BackendError),
        (ConnectionRefusedError, BackendUnavailable),
    ],
)
def test_rows(kind: type[BaseException], expected: type[BackendError]) -> None:
    assert ERRORS.lookup(kind) is expected


def test_boundary_chains_and_keeps_the_original() -> None:
    original = kz.ConnectionLoss("gone")
    with pytest.raises(BackendUnavailable) as caught, ERRORS.boundary("put a/b"):
        raise original
    assert caught.value.orig is original
    assert caught.value.__cause__ is original
    assert caught.value.backend == "zookeeper"
    assert "put a/b" in str(caught.value)


def test_boundary_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError), ERRORS.boundary("anything"):
        raise KeyError("not a client error")


def test_all_is_sorted() -> None:
    assert discovery_zookeeper.__all__ == sorted(discovery_zookeeper.__all__)
    for name in discovery_zookeeper.__all__:
        assert hasattr(discovery_zookeeper, name)
