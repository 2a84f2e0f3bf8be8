"""Local ZooKeeper servers: a standalone server or a 3-member ensemble from ZooKeeper's jars.

Each member is a JVM running ``QuorumPeerMain`` with its own ``zoo.cfg``,
``myid`` and log in its directory; client, quorum and election ports are on
127.0.0.1 only. The tick is short (100 ms by default) so that clients may ask
for sessions of one to a few seconds and session expiry takes seconds, not
minutes. Four-letter words are all enabled, since health and leadership are
read with ``ruok`` and ``srvr``; the admin HTTP server is off. The JVM gets a
small heap and the flags that make it start fast, but keeps its JIT whole, so
benchmark numbers stay representative. With TLS files, each member also
serves a secure client port through Netty (PEM key and trust stores, client
certificates required when the files say so); the plain port stays open on
127.0.0.1 for health checks and four-letter words, and :meth:`ZooKeeperCluster.url`
names the secure ports with the backend's TLS options.
"""

from __future__ import annotations

import math
import os
import re
import socket
import urllib.parse
from pathlib import Path
from typing import ClassVar

from discovery.servers._binaries import CLASSPATH_ENV, find_java, find_zookeeper_classpath, zookeeper_tls_jars
from discovery.servers._cluster import Cluster, normalise_root
from discovery.servers._errors import ServerError
from discovery.servers._process import Member
from discovery.servers._tls import TlsFiles

_MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
_SERVING_MODES = frozenset({"standalone", "leader", "follower"})
_MODE = re.compile(r"^Mode:\s*(\S+)", re.MULTILINE)
_VERSION = re.compile(r"Zookeeper version:\s*(\d+(?:\.\d+)*)")


def four_letter_word(port: int, command: str, *, host: str = "127.0.0.1", timeout: float = 2.0) -> str:
    """Send a ZooKeeper four-letter command (``ruok``, ``srvr``, ``mntr``...) and return the answer.

    Args:
        port: the server's client port.
        command: the four-letter command.
        host: the server's address.
        timeout: socket timeout in seconds.

    Returns:
        The server's answer, decoded.

    Raises:
        ServerError: the server could not be reached or closed the connection without answering in time.
    """
    chunks: list[bytes] = []
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(command.encode("ascii"))
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError as exc:
        raise ServerError(f"zookeeper {host}:{port} {command}: {exc}") from exc
    return b"".join(chunks).decode("utf-8", "replace")


def server_mode(port: int, timeout: float = 2.0) -> str | None:
    """The ``Mode:`` of a server's ``srvr`` answer (standalone, leader, follower); None when it is not serving.

    Args:
        port: the server's client port on 127.0.0.1.
        timeout: socket timeout in seconds.
    """
    try:
        answer = four_letter_word(port, "srvr", timeout=timeout)
    except ServerError:
        return None
    match = _MODE.search(answer)
    return match.group(1) if match else None


def serving(port: int, timeout: float = 2.0) -> bool:
    """Whether the server on ``port`` says ``imok`` to ``ruok`` and serves clients as part of a quorum."""
    try:
        if four_letter_word(port, "ruok", timeout=timeout).strip() != "imok":
            return False
    except ServerError:
        return False
    return server_mode(port, timeout) in _SERVING_MODES


def parse_version(srvr_answer: str) -> str | None:
    """The version number (``"3.8.0"``) in a ``srvr`` answer, None if there is none."""
    match = _VERSION.search(srvr_answer)
    return match.group(1) if match else None


def _health(member: Member) -> bool:
    return serving(member.client_port, timeout=1.0)


class ZooKeeperCluster(Cluster):
    """A standalone ZooKeeper server or an ensemble, on free 127.0.0.1 ports.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with ZooKeeperCluster(members=3) as cluster:
            client = kazoo.client.KazooClient(hosts=cluster.hosts)

    Args:
        members: how many members: 1 runs standalone, more form an ensemble (3 in practice).
        base_dir: where the members' directories go; a temporary directory,
            removed by :meth:`stop`, when None. A given directory is kept.
        tick_time_ms: ZooKeeper's ``tickTime``, the unit of its timeouts.
        java: the java executable; else ``$DISCOVERY_JAVA``, ``$JAVA_HOME``, then ``PATH``.
        classpath: ZooKeeper's classpath; else ``$DISCOVERY_ZOOKEEPER_CLASSPATH``, then Debian's jars.
        min_session_timeout_ms: the shortest session a client may get; two ticks when None.
        max_session_timeout_ms: the longest session a client may get.
        heap: the JVM's maximum heap (``-Xmx``).
        tls: also serve clients over TLS with these files, on a secure port per
            member (client certificates required if ``tls.client_cert_auth``);
            :meth:`url` then names those ports with the ``use_ssl``, ``ca``,
            ``certfile`` and ``keyfile`` options.

    Raises:
        MissingServerBinary: Java or ZooKeeper's jars are not installed
            (``apt-get install zookeeper openjdk-17-jre-headless``).
        InvalidValue: ``members`` is less than one.
    """

    kind: ClassVar[str] = "zookeeper"
    # client, quorum, election, and the secure client port (used with TLS only).
    ports_per_member: ClassVar[int] = 4
    default_timeout: ClassVar[float] = 60.0

    def __init__(
        self,
        members: int = 1,
        *,
        base_dir: Path | None = None,
        tick_time_ms: int = 100,
        java: str | None = None,
        classpath: str | None = None,
        min_session_timeout_ms: int | None = None,
        max_session_timeout_ms: int = 60000,
        heap: str = "256m",
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(members, base_dir)
        self.java = find_java(java)
        self.classpath = find_zookeeper_classpath(classpath)
        if tls is not None and not (classpath or os.environ.get(CLASSPATH_ENV)):
            self.classpath = os.pathsep.join([self.classpath, *map(str, zookeeper_tls_jars())])
        self.tls = tls
        self._secure_ports: dict[str, int] = {}
        self.tick_time_ms = tick_time_ms
        self.min_session_timeout_ms = 2 * tick_time_ms if min_session_timeout_ms is None else min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.heap = heap

    def version(self) -> str:
        """The server version, e.g. ``"3.8.0"``.

        Raises:
            ServerError: no member answered.
        """
        member = self.reachable_member()
        answer = four_letter_word(member.client_port, "srvr")
        version = parse_version(answer)
        if version is None:
            raise ServerError(f"{member.name}: no version in srvr answer {answer[:200]!r}")
        return version

    @property
    def secure_hosts(self) -> str:
        """The TLS client addresses, ``"127.0.0.1:p1,..."`` (empty without TLS or before start)."""
        return ",".join(f"127.0.0.1:{self._secure_ports[m.name]}" for m in self.members if m.name in self._secure_ports)

    def url(self, scheme: str | None = None, root: str = "/services") -> str:
        """A registry URL naming every member; with TLS, their secure ports and the backend's TLS options.

        Raises:
            ServerError: the cluster is not started.
        """
        if self.tls is None:
            return super().url(scheme, root)
        self._require_started()
        cert, key = self.tls.client_pair
        options = {"use_ssl": "true", "ca": str(self.tls.ca_file), "certfile": str(cert), "keyfile": str(key)}
        query = urllib.parse.urlencode(options)
        return f"{scheme or self.kind}://{self.secure_hosts}{normalise_root(root)}?{query}"

    def command(self, member: Member, word: str, timeout: float = 2.0) -> str:
        """Send a four-letter command to ``member`` and return its answer.

        Raises:
            ServerError: the member could not be reached.
        """
        return four_letter_word(member.client_port, word, timeout=timeout)

    def _tls_config(self, member_dir: Path, secure_port: int) -> list[str]:
        """zoo.cfg lines for a Netty TLS client port (zoo.cfg keys become ``zookeeper.*`` properties)."""
        if self.tls is None:
            return []
        # Java's PEM key store wants the private key and its certificate in one file.
        key_store = member_dir / "server-key-and-cert.pem"
        key_store.write_text(Path(self.tls.key_file).read_text() + Path(self.tls.cert_file).read_text())
        key_store.chmod(0o600)
        return [
            f"secureClientPort={secure_port}",
            "secureClientPortAddress=127.0.0.1",
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
            f"ssl.keyStore.location={key_store}",
            "ssl.keyStore.type=PEM",
            f"ssl.trustStore.location={self.tls.ca_file}",
            "ssl.trustStore.type=PEM",
            f"ssl.clientAuth={'need' if self.tls.client_cert_auth else 'none'}",
        ]

    def _config(self, member_dir: Path, client_port: int, servers: list[str], secure_port: int | None) -> str:
        # initLimit and syncLimit count ticks; at 100 ms a follower gets at least
        # 5 s to sync at start (three JVMs on two cores are slow) and 2 s of
        # silence before it drops a leader.
        init_limit = max(10, math.ceil(5000 / self.tick_time_ms))
        sync_limit = max(5, math.ceil(2000 / self.tick_time_ms))
        lines = [
            f"tickTime={self.tick_time_ms}",
            f"initLimit={init_limit}",
            f"syncLimit={sync_limit}",
            f"dataDir={member_dir / 'data'}",
            f"clientPort={client_port}",
            "clientPortAddress=127.0.0.1",
            f"minSessionTimeout={self.min_session_timeout_ms}",
            f"maxSessionTimeout={self.max_session_timeout_ms}",
            # Every client comes from 127.0.0.1; the default of 60 per address starves benchmarks.
            "maxClientCnxns=0",
            "4lw.commands.whitelist=*",
            "admin.enableServer=false",
            *servers,
        ]
        if secure_port is not None:
            lines += self._tls_config(member_dir, secure_port)
        return "\n".join(lines) + "\n"

    def _make_members(self, ports: list[int]) -> list[Member]:
        quads = [tuple(ports[index : index + 4]) for index in range(0, len(ports), 4)]
        triples = [quad[:3] for quad in quads]
        self._secure_ports = {f"zookeeper-{sid}": quad[3] for sid, quad in enumerate(quads, 1)} if self.tls else {}
        servers = (
            [f"server.{sid}=127.0.0.1:{quorum}:{election}" for sid, (_, quorum, election) in enumerate(triples, 1)]
            if self.size > 1
            else []
        )
        members = []
        for sid, (client, quorum, election) in enumerate(triples, 1):
            name = f"zookeeper-{sid}"
            member_dir = self._member_dir(name)
            (member_dir / "data").mkdir(parents=True, exist_ok=True)
            (member_dir / "data" / "myid").write_text(f"{sid}\n")
            config = member_dir / "zoo.cfg"
            config.write_text(self._config(member_dir, client, servers, self._secure_ports.get(name)))
            command = [
                self.java,
                f"-Xmx{self.heap}",
                "-XX:+UseSerialGC",
                "-Xshare:auto",
                "-XX:-UsePerfData",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.net.preferIPv4Stack=true",
                "-Djava.awt.headless=true",
                f"-Djava.io.tmpdir={member_dir}",
                "-Dzookeeper.admin.enableServer=false",
                "-Dzookeeper.jmx.log4j.disable=true",
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
                "-cp",
                self.classpath,
                _MAIN_CLASS,
                str(config),
            ]
            members.append(
                Member(
                    kind=self.kind,
                    name=name,
                    client_port=client,
                    peer_port=quorum,
                    election_port=election,
                    data_dir=member_dir,
                    command=command,
                    health=_health,
                )
            )
        return members

    def _started(self) -> None:
        # Members are known by their myid, written before start: nothing to ask.
        return None

    def _find_leader(self) -> Member | None:
        for member in self.members:
            if (
                member.running
                and not member.paused
                and server_mode(member.client_port, timeout=1.0) in ("leader", "standalone")
            ):
                return member
        return None
