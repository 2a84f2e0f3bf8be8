"""The etcd backends' translation tables are complete, and their settings and key mapping behave."""

from __future__ import annotations

import importlib
import inspect
import ssl
import types

import etcd
import pytest
import requests.exceptions
import urllib3.exceptions
from urllib3.connection import HTTPConnection

import discovery
from discovery._plugins import load_backend
from discovery.backend import Target
from discovery.capabilities import Capability
from discovery.errors import (
    AuthenticationFailed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    InvalidOption,
    SessionExpired,
    Unsupported,
)
from discovery_etcd import Etcd2Backend, EtcdBackend
from discovery_etcd._common import ConnectionSettings, KeySpace
from discovery_etcd._errors import (
    ETCD_ERRORS,
    GATEWAY_CODES,
    REQUESTS_ERRORS,
    URLLIB3_ERRORS,
    V2_DISABLED,
    V2_ERRORS,
    V2_TABLE,
    V3_ERRORS,
    V3_TABLE,
    GatewayError,
)
from discovery_etcd._v2 import V2KeySpace, ValueIndexes
from discovery_etcd._v3client import prefix_end


def exception_classes(module: types.ModuleType, base: type[BaseException]) -> set[type[BaseException]]:
    return {obj for obj in vars(module).values() if inspect.isclass(obj) and issubclass(obj, base)}


@pytest.mark.parametrize(
    ("module", "base", "table"),
    [
        (requests.exceptions, requests.exceptions.RequestException, REQUESTS_ERRORS),
        (urllib3.exceptions, urllib3.exceptions.HTTPError, URLLIB3_ERRORS),
        (etcd, etcd.EtcdException, ETCD_ERRORS),
    ],
    ids=["requests", "urllib3", "python-etcd"],
)
def test_table_names_every_exception_of_the_client(
    module: types.ModuleType, base: type[BaseException], table: dict[type[BaseException], type[BackendError]]
) -> None:
    missing = exception_classes(module, base) - set(table)
    assert not missing, f"not in the table: {sorted(cls.__name__ for cls in missing)}"


def test_each_backend_table_holds_its_clients() -> None:
    assert set(REQUESTS_ERRORS) | set(URLLIB3_ERRORS) | {GatewayError, OSError} <= set(V3_TABLE)
    assert set(REQUESTS_ERRORS) | set(URLLIB3_ERRORS) | set(ETCD_ERRORS) <= set(V2_TABLE)
    assert all(issubclass(kind, BackendError) for kind in [*V3_TABLE.values(), *V2_TABLE.values()])


def test_every_grpc_status_code_is_mapped() -> None:
    assert set(GATEWAY_CODES) == set(range(1, 17))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (requests.exceptions.ConnectTimeout("x"), BackendUnavailable),
        (requests.exceptions.ReadTimeout("x"), BackendTimeout),
        (requests.exceptions.ChunkedEncodingError("x"), BackendUnavailable),
        (requests.exceptions.SSLError("x"), AuthenticationFailed),
        (urllib3.exceptions.NewConnectionError(HTTPConnection("127.0.0.1"), "x"), BackendUnavailable),
        (GatewayError(5, "etcdserver: requested lease not found", 404), SessionExpired),
        (GatewayError(3, "etcdserver: authentication failed, invalid user ID or password", 400), AuthenticationFailed),
        (GatewayError(14, "etcdserver: leader changed", 503), BackendUnavailable),
        (GatewayError(11, "etcdserver: mvcc: required revision has been compacted", 400), BackendError),
        (ConnectionResetError(), BackendUnavailable),
    ],
)
def test_translate_v3(exc: BaseException, expected: type[BackendError]) -> None:
    error = V3_ERRORS.translate(exc, "put")
    assert type(error) is expected
    assert isinstance(error, BackendError)
    assert error.orig is exc
    assert error.backend == "etcd"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (etcd.EtcdConnectionFailed("x"), BackendUnavailable),
        (
            etcd.EtcdConnectionFailed("x", cause=urllib3.exceptions.MaxRetryError(None, "/v2/keys", reason=OSError())),
            BackendUnavailable,
        ),
        (
            etcd.EtcdConnectionFailed(
                "x", cause=urllib3.exceptions.MaxRetryError(None, "/v2/keys", reason=urllib3.exceptions.SSLError())
            ),
            AuthenticationFailed,
        ),
        (etcd.EtcdConnectionFailed("x", cause=ssl.SSLError(1, "certificate required")), AuthenticationFailed),
        (etcd.EtcdWatchTimedOut("x"), BackendTimeout),
        (etcd.EtcdInsufficientPermissions("x"), AuthenticationFailed),
        (etcd.EtcdLeaderElectionInProgress("x"), BackendUnavailable),
        (etcd.EtcdKeyNotFound("x", {"errorCode": 100, "index": 3}), BackendError),
        (requests.exceptions.ConnectionError("x"), BackendUnavailable),
    ],
)
def test_translate_v2(exc: BaseException, expected: type[BackendError]) -> None:
    error = V2_ERRORS.translate(exc, "list")
    assert type(error) is expected
    assert isinstance(error, BackendError)
    assert error.orig is exc


def test_a_server_without_v2_is_unsupported() -> None:
    answer = etcd.EtcdException(
        "Bad response : 404 page not found", {"message": "Bad response", "cause": "404 page not found\n"}
    )
    error = V2_ERRORS.translate(answer, "list")
    assert isinstance(error, Unsupported)
    assert V2_DISABLED in str(error)


@pytest.mark.parametrize(
    "module",
    [
        "discovery_etcd",
        "discovery_etcd._common",
        "discovery_etcd._errors",
        "discovery_etcd._v2",
        "discovery_etcd._v3",
        "discovery_etcd._v3client",
    ],
)
def test_all_is_sorted_and_exists(module: str) -> None:
    loaded = importlib.import_module(module)
    names = list(loaded.__all__)
    assert names == sorted(names)
    assert all(hasattr(loaded, name) for name in names)


def test_entry_points_and_declarations() -> None:
    assert {"etcd", "etcd2"} <= set(discovery.available_backends())
    assert load_backend("etcd") is EtcdBackend
    assert load_backend("etcd2") is Etcd2Backend
    assert Capability.EXPIRY_CAUSE in Etcd2Backend.capabilities
    assert Capability.EXPIRY_CAUSE not in EtcdBackend.capabilities
    assert Capability.BATCHED_EXPIRY in EtcdBackend.capabilities
    assert Capability.BATCHED_EXPIRY not in Etcd2Backend.capabilities
    assert Capability.NATIVE_EPHEMERAL in EtcdBackend.capabilities
    assert Capability.NATIVE_EPHEMERAL not in Etcd2Backend.capabilities
    assert EtcdBackend.default_port == Etcd2Backend.default_port == 2379


def test_settings_from_options() -> None:
    plain = ConnectionSettings.of(EtcdBackend(Target("etcd", (("127.0.0.1", 2379), ("::1", 2380)), "/s", {})))
    assert plain.endpoints == ("http://127.0.0.1:2379", "http://[::1]:2380")
    assert plain.timeout == 5.0
    files = {"ca": "/ca.pem", "cert": "/c.pem", "key": "/k.pem"}
    tls = ConnectionSettings.of(EtcdBackend(Target("etcd", (), "", files)))
    assert tls.endpoints == ("https://127.0.0.1:2379",)
    assert (tls.verify, tls.client_cert) == ("/ca.pem", ("/c.pem", "/k.pem"))
    assert "secret" not in repr(ConnectionSettings.of(EtcdBackend(Target("etcd", (), "", {"password": "secret"}))))
    for query, option in (("protocol=gopher", "protocol"), ("timeout=0", "timeout"), ("key=/k.pem", "key")):
        with pytest.raises(InvalidOption) as caught:
            discovery.connect(f"etcd://127.0.0.1:1/s?{query}")
        assert caught.value.option == option


def test_key_mapping() -> None:
    keys = KeySpace("/services/")
    assert keys.full("buzz/api/h1") == "/services/buzz/api/h1"
    assert keys.relative("/services/buzz/api/h1") == "buzz/api/h1"
    assert keys.relative("/servicesx/a") is None
    assert KeySpace("").full("buzz/") == "/buzz/"
    v2 = V2KeySpace("/s")
    assert v2.full("buzz/api/_definition") == "/s/buzz/api/~_definition"
    assert v2.relative("/s/buzz/api/~_definition") == "buzz/api/_definition"
    assert v2.directory("") == "/s"
    assert V2KeySpace("").directory("") == "/"
    assert prefix_end(b"/s/") == b"/s0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"


def test_value_indexes_hide_refreshes() -> None:
    indexes = ValueIndexes()
    indexes.written("/s/a/h1", 5, "v", 5)
    assert indexes.listed("/s", [("/s/a/h1", 5, "v", 40)]) == [5]
    assert indexes.listed("/s", [("/s/a/h1", 5, "w", 41)]) == [41]
    indexes.written("/s/a/h1", 5, "x", 50)
    assert indexes.listed("/s", [("/s/a/h1", 5, "x", 90)]) == [50]
    assert indexes.listed("/s", []) == []
    assert indexes.listed("/s", [("/s/a/h1", 5, "x", 95)]) == [95]
    indexes.deleted("/s/a/h1", 96)
    assert indexes.listed("/s", [("/s/a/h1", 97, "x", 97)]) == [97]
