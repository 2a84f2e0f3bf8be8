"""Both etcd backends against a server with authentication on: credentials work, wrong ones are refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from discovery.errors import AuthenticationFailed
from discovery.servers import EtcdCluster
from discovery_etcd import Etcd2Backend, EtcdBackend


@pytest.fixture(scope="module")
def secured() -> Iterator[EtcdCluster]:
    """An etcd of its own with user ``root`` (password ``pw``) and authentication enabled in both APIs."""
    with EtcdCluster(members=1) as cluster:
        cluster.enable_auth("pw")
        yield cluster


@pytest.mark.parametrize("cls", [EtcdBackend, Etcd2Backend], ids=["v3", "v2"])
def test_right_credentials_work(cls: type[Any], make_backend: Callable[..., Any], secured: EtcdCluster) -> None:
    backend = make_backend(cls, secured, user="root", password="pw")
    stream = backend.watch("svc/", None)
    session = backend.open_session(2)
    backend.put("svc/a/h1", f'{{"registrant":"{session.id}"}}'.encode(), session)
    assert [record.key for record in backend.list("svc/").records] == ["svc/a/h1"]
    item = stream.next(10)
    assert item is not None
    stream.close()
    session.close()


@pytest.mark.parametrize("cls", [EtcdBackend, Etcd2Backend], ids=["v3", "v2"])
@pytest.mark.parametrize("credentials", [{"user": "root", "password": "wrong"}, {}], ids=["wrong", "none"])
def test_wrong_credentials_are_refused(
    cls: type[Any], credentials: dict[str, str], make_backend: Callable[..., Any], secured: EtcdCluster
) -> None:
    backend = make_backend(cls, secured, **credentials)
    with pytest.raises(AuthenticationFailed) as caught:
        backend.put("svc/a/h1", b"x", None)
    assert caught.value.orig is not None


def test_v3_token_forgotten_by_the_server_is_renewed(make_backend: Callable[..., Any], secured: EtcdCluster) -> None:
    backend = make_backend(EtcdBackend, secured, user="root", password="pw")
    backend.put("svc/a/h1", b"x", None)
    # Play a token the server no longer knows (an expired simple token): it is
    # refused with "invalid auth token", and the client authenticates again.
    endpoint = backend.client.endpoint
    backend.client._tokens[endpoint] = "expired.1"
    backend.put("svc/a/h1", b"y", None)
    assert backend.client._tokens[endpoint] != "expired.1"
