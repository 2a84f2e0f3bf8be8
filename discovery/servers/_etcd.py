"""Local etcd clusters: one or more ``etcd`` processes on free loopback ports.

Members listen for clients and peers on 127.0.0.1 only, keep their data in the
cluster's directory and log (zap, JSON lines) to ``server.log`` there. The v2
API is on by default because the ``etcd2://`` backend needs it. Health,
leadership, revision and compaction go through the member's HTTP endpoints
(``/health``, ``/version`` and the v3 JSON gateway), so no etcd client library
is needed here. With :class:`~discovery.servers.EtcdTls` the client URLs
are served over https (peer traffic stays http) and these requests trust the
given CA and present its client certificate. ``ETCD_*`` variables are removed from the servers'
environment: etcd reads them as flags and they would change what tests run.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import platform
import ssl
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, ClassVar

from discovery.servers._binaries import find_etcd
from discovery.servers._cluster import Cluster
from discovery.servers._errors import ServerError
from discovery.servers._http import HttpError, request_json
from discovery.servers._process import Member
from discovery.servers._tls import EtcdTls

# etcd 3.4 runs on arm64 only when told the architecture is "unsupported".
_UNSUPPORTED_ARCH = {"aarch64": "arm64", "arm64": "arm64"}


def endpoint_healthy(address: str, timeout: float = 1.0, context: ssl.SSLContext | None = None) -> bool:
    """Whether the etcd member at ``address`` (``"127.0.0.1:2379"``) says ``/health`` is true.

    etcd answers true only when the member has a leader and a quorum read succeeds.
    With an SSL ``context`` the member is asked over https.
    """
    scheme = "http" if context is None else "https"
    try:
        body = request_json(f"{scheme}://{address}/health", timeout=timeout, context=context)
    except HttpError:
        return False
    return isinstance(body, dict) and body.get("health") == "true"


def _health(member: Member, context: ssl.SSLContext | None = None) -> bool:
    return endpoint_healthy(member.address, context=context)


def _server_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ETCD_")}
    arch = _UNSUPPORTED_ARCH.get(platform.machine().lower())
    if arch:
        env["ETCD_UNSUPPORTED_ARCH"] = arch
    return env


class EtcdCluster(Cluster):
    """One etcd member, or several forming a cluster, on free 127.0.0.1 ports.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with EtcdCluster(members=3) as cluster:
            registry = discovery.connect(cluster.url())

    Args:
        members: how many members (1 or 3 in practice).
        base_dir: where the members' directories go; a temporary directory,
            removed by :meth:`stop`, when None. A given directory is kept.
        enable_v2: serve the v2 API as well (``--enable-v2=true``).
        binary: the etcd executable; else ``$DISCOVERY_ETCD_BIN``, then ``PATH``.
        auto_compaction: compact periodically, keeping ``auto_compaction_retention`` of history.
        auto_compaction_retention: etcd's ``--auto-compaction-retention`` in periodic mode.
        heartbeat_ms: raft heartbeat interval.
        election_ms: raft election timeout; a new leader is elected about this long after the old one died.
        tls: serve the client URLs over https with these files (peers stay on http); :meth:`url`
            then carries the backends' TLS options, and the cluster's own requests use the CA and
            the client certificate. Plain http when None.
        auth_token_ttl: seconds a simple authentication token lives unused (etcd's
            ``--auth-token-ttl``, 300 by default); short values play token expiry.

    Raises:
        MissingServerBinary: etcd is not installed (``apt-get install etcd-server``).
        InvalidValue: ``members`` is less than one.
    """

    kind: ClassVar[str] = "etcd"
    default_timeout: ClassVar[float] = 30.0
    # Members told to stop together each try to hand the lead to a peer that
    # is leaving too, which takes seconds; one at a time they stop in milliseconds.
    parallel_stop: ClassVar[bool] = False

    def __init__(
        self,
        members: int = 1,
        *,
        base_dir: Path | None = None,
        enable_v2: bool = True,
        binary: str | None = None,
        auto_compaction: bool = False,
        auto_compaction_retention: str = "10s",
        heartbeat_ms: int = 100,
        election_ms: int = 1000,
        tls: EtcdTls | None = None,
        auth_token_ttl: int | None = None,
    ) -> None:
        super().__init__(members, base_dir)
        self.binary = find_etcd(binary)
        self.enable_v2 = enable_v2
        self.auto_compaction = auto_compaction
        self.auto_compaction_retention = auto_compaction_retention
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.auth_token_ttl = auth_token_ttl
        self._member_ids: dict[str, str] = {}
        self.tls = tls
        self._context = None if tls is None else tls.client_context()
        self._scheme = "http" if tls is None else "https"

    @property
    def client_urls(self) -> list[str]:
        """The members' client URLs, ``["http://127.0.0.1:23791", ...]`` (``https`` with TLS)."""
        return [f"{self._scheme}://{member.address}" for member in self.members]

    def url(self, scheme: str | None = None, root: str = "/services") -> str:
        """A registry URL naming every member; with TLS it carries ``protocol``, ``ca``, ``cert`` and ``key``.

        Raises:
            ServerError: the cluster is not started.
        """
        base = super().url(scheme, root)
        if self.tls is None:
            return base
        return f"{base}?{urllib.parse.urlencode(self.tls.url_options())}"

    def member_id(self, member: Member) -> str:
        """The raft member id etcd gave ``member`` (decimal, as the JSON gateway prints it).

        Raises:
            ServerError: the id is not known (the cluster is not started).
        """
        try:
            return self._member_ids[member.name]
        except KeyError:
            raise ServerError(f"{member.name}: member id unknown; is the cluster started?") from None

    def request(self, path: str, payload: Any = None, timeout: float = 5.0) -> Any:
        """Send a request to the first reachable member and decode its JSON answer.

        Args:
            path: the URL path, e.g. ``"/v3/kv/range"`` or ``"/version"``.
            payload: a JSON body to POST; None for a GET.
            timeout: seconds.

        Returns:
            The decoded answer.

        Raises:
            ServerError: no member is reachable, or the request failed (the original error is chained).
        """
        member = self.reachable_member()
        try:
            return request_json(f"{self._scheme}://{member.address}{path}", payload, timeout, self._context)
        except HttpError as exc:
            raise ServerError(f"etcd request {path} failed: {exc}") from exc

    def enable_auth(self, root_password: str) -> None:
        """Turn authentication on in both APIs, with user ``root`` (``root_password``) holding every right.

        v3: the user ``root`` with the role ``root``. v2: the user ``root``, and the
        ``guest`` role (what an unauthenticated request gets) stripped of its
        default read-write on every key, so a request without credentials is refused.

        Raises:
            ServerError: a member refused a step (the original error is chained).
        """
        self.request("/v3/auth/user/add", {"name": "root", "password": root_password})
        self.request("/v3/auth/user/grant", {"user": "root", "role": "root"})
        self.request("/v3/auth/enable", {})
        basic = "Basic " + base64.b64encode(f"root:{root_password}".encode()).decode()
        self._v2_put("/v2/auth/users/root", {"user": "root", "password": root_password}, None)
        self._v2_put("/v2/auth/enable", None, None)
        revoke = {"role": "guest", "revoke": {"kv": {"read": ["/*"], "write": ["/*"]}}}
        self._v2_put("/v2/auth/roles/guest", revoke, basic)

    def _v2_put(self, path: str, payload: Any, authorization: str | None) -> None:
        member = self.reachable_member()
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self._scheme}://{member.address}{path}", data=data, method="PUT")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if authorization is not None:
            request.add_header("Authorization", authorization)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10):
                pass
        except OSError as exc:
            raise ServerError(f"etcd request PUT {path} failed (status hidden: it may echo credentials)") from exc

    def revision(self) -> int:
        """The current revision of the key-value store (a linearizable read).

        Raises:
            ServerError: no member answered.
        """
        body = self.request("/v3/kv/range", {"key": base64.b64encode(b"\0").decode(), "count_only": True})
        return int(body["header"]["revision"])

    def compact(self, revision: int | None = None) -> int:
        """Compact the store's history up to ``revision`` and wait until it is physically done.

        Args:
            revision: the revision to compact to; the current revision when None.

        Returns:
            The revision compacted to.

        Raises:
            ServerError: the revision is already compacted or in the future, or no member answered.
        """
        target = self.revision() if revision is None else revision
        self.request("/v3/kv/compaction", {"revision": str(target), "physical": True}, timeout=30.0)
        return target

    def version(self) -> str:
        """The etcd server version, e.g. ``"3.4.23"``.

        Raises:
            ServerError: no member answered.
        """
        return str(self.request("/version")["etcdserver"])

    def status(self, member: Member, timeout: float = 2.0) -> dict[str, Any]:
        """``member``'s answer to ``/v3/maintenance/status`` (member id, leader id, raft term...).

        Raises:
            ServerError: the member did not answer.
        """
        try:
            body = request_json(f"{self._scheme}://{member.address}/v3/maintenance/status", {}, timeout, self._context)
        except HttpError as exc:
            raise ServerError(f"{member.name}: status failed: {exc}") from exc
        if not isinstance(body, dict):
            raise ServerError(f"{member.name}: unexpected status answer {body!r}")
        return body

    def _make_members(self, ports: list[int]) -> list[Member]:
        self._member_ids = {}
        token = f"discovery-{uuid.uuid4().hex[:12]}"
        names = [f"etcd-{index}" for index in range(self.size)]
        client_ports = ports[0::2]
        peer_ports = ports[1::2]
        initial_cluster = ",".join(
            f"{name}=http://127.0.0.1:{peer}" for name, peer in zip(names, peer_ports, strict=True)
        )
        env = _server_env()
        members = []
        for name, client, peer in zip(names, client_ports, peer_ports, strict=True):
            data_dir = self._member_dir(name)
            client_url = f"{self._scheme}://127.0.0.1:{client}"
            peer_url = f"http://127.0.0.1:{peer}"
            command = [
                self.binary,
                f"--name={name}",
                f"--data-dir={data_dir / 'data'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster={initial_cluster}",
                "--initial-cluster-state=new",
                f"--initial-cluster-token={token}",
                f"--enable-v2={'true' if self.enable_v2 else 'false'}",
                f"--heartbeat-interval={self.heartbeat_ms}",
                f"--election-timeout={self.election_ms}",
                "--logger=zap",
                "--log-outputs=stderr",
            ]
            if self.tls is not None:
                command += self.tls.server_flags()
            if self.auth_token_ttl is not None:
                command.append(f"--auth-token-ttl={self.auth_token_ttl}")
            if self.auto_compaction:
                command += [
                    "--auto-compaction-mode=periodic",
                    f"--auto-compaction-retention={self.auto_compaction_retention}",
                ]
            members.append(
                Member(
                    kind=self.kind,
                    name=name,
                    client_port=client,
                    peer_port=peer,
                    data_dir=data_dir,
                    command=command,
                    health=functools.partial(_health, context=self._context),
                    env=env,
                )
            )
        return members

    def _started(self) -> None:
        self._member_ids = {member.name: str(self.status(member)["header"]["member_id"]) for member in self.members}

    def _find_leader(self) -> Member | None:
        leaders: list[tuple[int, Member]] = []
        for member in self.members:
            if not member.running or member.paused:
                continue
            try:
                status = self.status(member, timeout=1.0)
            except ServerError:
                continue
            member_id = str(status["header"]["member_id"])
            self._member_ids[member.name] = member_id
            if status.get("leader") == member_id:
                leaders.append((int(status.get("raftTerm", 0)), member))
        # Two members can both claim the lead for a moment; the newer term wins.
        return max(leaders, key=lambda pair: pair[0])[1] if leaders else None
