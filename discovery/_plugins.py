"""Backend plugins: found through the ``discovery.backends`` entry-point group.

A backend's plugin name is its URL scheme. Loading goes through stevedore,
so any installed distribution can add a backend; an unknown scheme names the
installed ones and, for the backends this project ships, the distribution to
install.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from stevedore import driver
from stevedore.exception import NoMatches

from discovery.backend import Backend
from discovery.errors import ConfigurationError, UnknownBackend

NAMESPACE = "discovery.backends"

DISTRIBUTIONS = {
    "memory": "discovery-registry",
    "zookeeper": "discovery-registry-zookeeper",
    "zk": "discovery-registry-zookeeper",
    "etcd": "discovery-registry-etcd",
    "etcd2": "discovery-registry-etcd",
}
"""The distribution that provides each backend this project ships."""


def available_backends() -> list[str]:
    """The URL schemes of the installed backends, sorted.

    Returns:
        Plugin names such as ``["etcd", "etcd2", "memory", "zk", "zookeeper"]``.
    """
    return sorted({ep.name for ep in entry_points(group=NAMESPACE)})


@functools.cache
def load_backend(scheme: str) -> type[Backend]:
    """The backend class for a URL scheme.

    Raises:
        UnknownBackend: no installed plugin has that name.
        ConfigurationError: the plugin is installed but fails to load.
    """
    try:
        manager: driver.DriverManager[type[Backend]] = driver.DriverManager(
            NAMESPACE, scheme, invoke_on_load=False, on_load_failure_callback=_reraise
        )
    except NoMatches:
        raise UnknownBackend(scheme, available_backends(), DISTRIBUTIONS.get(scheme)) from None
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(f"backend {scheme!r} failed to load: {exc}") from exc
    backend = manager.driver
    if not (isinstance(backend, type) and issubclass(backend, Backend)):
        raise ConfigurationError(f"backend {scheme!r} does not subclass discovery.backend.Backend")
    return backend


def _reraise(manager: object, entrypoint: object, exc: BaseException) -> None:
    raise ConfigurationError(f"backend plugin {entrypoint} failed to load: {exc}") from exc
