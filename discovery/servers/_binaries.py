"""Where the server programs are: the etcd binary, a Java runtime and ZooKeeper's classpath.

Each is looked up in the same order: an explicit argument, then an environment
variable (``DISCOVERY_ETCD_BIN``, ``DISCOVERY_JAVA``,
``DISCOVERY_ZOOKEEPER_CLASSPATH``), then ``PATH`` and the places the Debian
packages install to. What cannot be found raises
:class:`~discovery.servers.MissingServerBinary`, naming the packages to install.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from discovery.servers._errors import MissingServerBinary

ETCD_ENV = "DISCOVERY_ETCD_BIN"
JAVA_ENV = "DISCOVERY_JAVA"
CLASSPATH_ENV = "DISCOVERY_ZOOKEEPER_CLASSPATH"

ETCD_PACKAGES = ("etcd-server",)
ZOOKEEPER_PACKAGES = ("zookeeper", "openjdk-17-jre-headless")

_JAR_DIR = Path("/usr/share/java")
# Debian's zookeeper.jar names its dependencies in its manifest's Class-Path,
# but no SLF4J binding: without one the server logs nothing at all.
_DEFAULT_JARS = ("zookeeper.jar",)
_LOG_BINDING = "slf4j-simple.jar"
# Debian's zookeeper.jar manifest omits Netty jars that its TLS server (Netty's SslHandler) needs.
_NETTY_TLS_JARS = ("netty-codec.jar", "netty-resolver.jar")


def _executable(path: str | Path) -> bool:
    candidate = Path(path)
    return candidate.is_file() and os.access(candidate, os.X_OK)


def _given(given: str) -> str | None:
    """The executable named by an argument or env var: a path, or a command looked up on PATH."""
    found = shutil.which(given) if os.sep not in given else given
    return found if found and _executable(found) else None


def _first(names: tuple[str, ...], paths: tuple[str, ...]) -> str | None:
    """The first of ``names`` found on PATH, else the first executable of ``paths``."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return next((path for path in paths if _executable(path)), None)


def find_etcd(binary: str | None = None) -> str:
    """The etcd executable to run.

    Args:
        binary: a path or command name that wins over ``$DISCOVERY_ETCD_BIN`` and ``PATH``.

    Returns:
        The path of the executable.

    Raises:
        MissingServerBinary: it is not installed or the given path is not executable.
    """
    given = binary or os.environ.get(ETCD_ENV)
    found = _given(given) if given else _first(("etcd",), ("/usr/bin/etcd", "/usr/local/bin/etcd"))
    if found is None:
        raise MissingServerBinary("etcd", ETCD_PACKAGES, ETCD_ENV, f"{given} is not an executable" if given else "")
    return found


def find_java(java: str | None = None) -> str:
    """The Java runtime that runs ZooKeeper.

    Args:
        java: a path or command name that wins over ``$DISCOVERY_JAVA``, ``$JAVA_HOME`` and ``PATH``.

    Returns:
        The path of the ``java`` executable.

    Raises:
        MissingServerBinary: no Java runtime is installed or the given path is not executable.
    """
    given = java or os.environ.get(JAVA_ENV)
    if given:
        found = _given(given)
    else:
        java_home = os.environ.get("JAVA_HOME")
        home = (str(Path(java_home) / "bin" / "java"),) if java_home else ()
        found = _first((), home) or _first(("java",), ("/usr/bin/java",))
    if found is None:
        raise MissingServerBinary(
            "java", ZOOKEEPER_PACKAGES, JAVA_ENV, f"{given} is not an executable" if given else ""
        )
    return found


def zookeeper_tls_jars() -> list[Path]:
    """The Netty jars ZooKeeper's TLS server needs and Debian's default classpath lacks, those installed."""
    return [_JAR_DIR / name for name in _NETTY_TLS_JARS if (_JAR_DIR / name).is_file()]


def find_zookeeper_classpath(classpath: str | None = None) -> str:
    """The Java classpath that holds ZooKeeper's server and its dependencies.

    Args:
        classpath: a ``:``-separated classpath that wins over ``$DISCOVERY_ZOOKEEPER_CLASSPATH``.

    Returns:
        The classpath. By default Debian's ``/usr/share/java/zookeeper.jar``
        (whose manifest lists its dependencies) plus ``slf4j-simple.jar`` for logs, when present.

    Raises:
        MissingServerBinary: a named jar or directory does not exist, or ZooKeeper is not installed.
    """
    chosen = classpath or os.environ.get(CLASSPATH_ENV)
    if chosen:
        for entry in chosen.split(os.pathsep):
            # A "dir/*" entry is a Java wildcard over the jars of dir.
            path = Path(entry[:-1]) if entry.endswith("*") else Path(entry)
            if entry and not path.exists():
                raise MissingServerBinary("zookeeper", ZOOKEEPER_PACKAGES, CLASSPATH_ENV, f"{entry} does not exist")
        return chosen
    jars = [_JAR_DIR / name for name in _DEFAULT_JARS]
    missing = [jar for jar in jars if not jar.is_file()]
    if missing:
        raise MissingServerBinary("zookeeper", ZOOKEEPER_PACKAGES, CLASSPATH_ENV, f"{missing[0]} does not exist")
    if (_JAR_DIR / _LOG_BINDING).is_file():
        jars.append(_JAR_DIR / _LOG_BINDING)
    return os.pathsep.join(str(jar) for jar in jars)
