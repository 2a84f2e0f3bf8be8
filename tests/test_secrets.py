"""Secrets never leak, and credentials can stay out of the URL (issue 16, points 3 and 4).

A password, a ZooKeeper digest or a wrong password tried by mistake must not
appear in log records of any library at any level, exception messages and
their chains, ``repr()`` of the registry and its parts, the command's output
or files it writes, the metrics or the dashboard's header. The tests against
real servers (an etcd of its own with authentication on, the shared
ZooKeeper with a digest ACL) log everything (root logger at level 1, below
kazoo's BLATHER) while they succeed and fail, then search all of it.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import subprocess
import sys
import traceback
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.serialization import Auth, Connect
from kazoo.security import make_digest_acl

import discovery
from discovery._config import resolve
from discovery._secrets import REDACTED, is_secret, redact_options, redact_url
from discovery.errors import AuthenticationFailed, DiscoveryError, InvalidOption
from discovery.servers import EtcdCluster, ZooKeeperCluster

SECRET = f"Sx7-{secrets.token_hex(8)}"
"""The right password: it must never be seen."""
WRONG = f"Wq3-{secrets.token_hex(8)}"
"""A wrong password tried by mistake: a secret as well (often a neighbour's password)."""


def _forbidden() -> list[str]:
    """Every form of the secrets that must not be seen: as given, and HTTP basic auth's base64."""
    forms = [SECRET, WRONG]
    for user in ("root", "ops"):
        for secret in (SECRET, WRONG):
            forms.append(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return forms


def assert_clean(texts: Iterable[str], what: str) -> None:
    for text in texts:
        for form in _forbidden():
            assert form not in text, f"a secret leaked into {what}: {text[:300]!r}"


def exception_texts(exc: BaseException) -> list[str]:
    """``str``, ``repr`` and the formatted traceback of ``exc`` and of every exception chained to it."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        item = pending.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        texts += [str(item), repr(item), repr(getattr(item, "value", None))]
        pending += [item.__cause__, item.__context__, getattr(item, "orig", None)]
    return texts


class _Everything(logging.Handler):
    """Keeps every record: its message, its exception's text, and the repr of its arguments."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts += [self.format(record), repr(record.args)]


_LIBRARIES = ("discovery", "kazoo", "kazoo.client", "urllib3", "requests", "etcd")


@contextlib.contextmanager
def everything_logged() -> Iterator[_Everything]:
    """Log every record of every library (level 1, below kazoo's BLATHER) into the handler yielded."""
    handler = _Everything()
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in _LIBRARIES}
    root_level = root.level
    root.addHandler(handler)
    root.setLevel(1)
    for name in _LIBRARIES:
        logging.getLogger(name).setLevel(1)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def object_texts(registry: discovery.Registry, *others: object) -> list[str]:
    """The reprs of a registry, its backend, target, settings and sessions, and of ``others``."""
    backend = registry.backend
    parts: list[object] = [registry, registry.url, backend, backend.target, *registry.sessions, *others]
    for name in ("settings", "client"):
        if hasattr(backend, name):
            parts.append(getattr(backend, name))
    return [repr(part) for part in parts] + [str(part) for part in parts]


def _refused(url: str, **options: object) -> list[str]:
    with pytest.raises(DiscoveryError) as caught, discovery.connect(url, **options) as registry:
        registry.instances("svc")
    return exception_texts(caught.value)


# -- without servers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("etcd://svc:pw@h:2379/r", "etcd://svc:***@h:2379/r"),
        ("etcd://svc@h:2379/r?password=pw&user=x", "etcd://svc@h:2379/r?password=***&user=x"),
        ("zk://ops:p@ss@h/r", "zk://ops:***@h/r"),
        ("etcd://u:pa/ss@h/r", "etcd://***@h/***"),
        ("etcd://u:pa?ss@h/r?password=pw", "etcd://***@h/***"),
        ("etcd:///?@\x1f=pw", "etcd://***@***"),
        ("etcd://u:pa#ss@h", "etcd://***@h"),
        ("etcd://h/r?user=svc@corp&password=pw", "etcd://h/r?user=svc@corp&password=***"),
        (
            "etcd://h/r?auth_digest=u:p&my_token=t&password_file=/run/pw",
            "etcd://h/r?auth_digest=***&my_token=***&password_file=/run/pw",
        ),
        ("memory://", "memory://"),
    ],
)
def test_urls_are_shown_with_their_secrets_masked(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown


def test_secret_option_names() -> None:
    assert all(map(is_secret, ["password", "auth_digest", "db_password", "api_token", "client_secret"]))
    assert not any(map(is_secret, ["user", "key", "keyfile", "ca", "password_file", "password_env", "timeout"]))
    assert redact_options({"user": "u", "password": "pw", "key": "/k.pem", "password_file": "/f"}) == {
        "user": "u",
        "password": REDACTED,
        "key": "/k.pem",
        "password_file": "/f",
    }


def test_url_credentials_become_the_backends_credentials() -> None:
    etcd = resolve("etcd://svc:p%40ss%2Fw@127.0.0.1:1/r", None, {})
    assert (etcd.target.options["user"], etcd.target.options["password"]) == ("svc", "p@ss/w")
    assert etcd.url == "etcd://svc:***@127.0.0.1:1/r"
    assert "p@ss" not in repr(etcd)
    zookeeper = resolve("zk://ops:s3cr%3At@127.0.0.1:1/r", None, {})
    assert zookeeper.target.options["auth_digest"] == "ops:s3cr:t"
    # The user alone, the password from elsewhere; keywords still win over the URL.
    assert resolve("etcd://svc@h/r", None, {"password": "kw"}).target.options["password"] == "kw"
    assert resolve("etcd://svc:url@h/r", None, {"password": "kw"}).target.options["password"] == "kw"


@pytest.mark.parametrize(
    ("url", "options", "option"),
    [
        (f"memory://u:{SECRET}@x", {}, "url"),
        (f"zk://ops@127.0.0.1:1/r?x={SECRET}", {}, "url"),
        (f"zk://127.0.0.1:1/r?x={SECRET}", {}, "x"),
        ("zk://ops@127.0.0.1:1/r", {}, "url"),
        (f"etcd://:{SECRET}@h/r", {}, "url"),
        (f"etcd://u:{SECRET}@h/r?password={WRONG}", {}, "password"),
        (f"etcd://u:{SECRET}@h:99999/r", {}, "url"),
        (f"etcd://u:{SECRET}/x@h/r", {}, "url"),
        (f"etcd://u:{SECRET}#x@h/r", {}, "url"),
        (f"etcd://u:{SECRET}?x@h/r", {}, "url"),
        (f"etcd://h/r?passwrd={SECRET}", {}, "passwrd"),
        ("etcd://h/r", {"password": 12345678}, "password"),
        ("etcd://h/r", {"pasword": SECRET}, "pasword"),
        ("etcd://h/r", {"key": f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n"}, "key"),
        (f"zk://127.0.0.1:1/r?auth_digest={SECRET}", {}, "auth_digest"),
    ],
)
def test_refusals_name_the_option_and_never_show_the_secret(url: str, options: dict[str, object], option: str) -> None:
    with pytest.raises(InvalidOption) as caught, discovery.connect(url, **options):
        pass
    assert caught.value.option == option
    assert_clean(exception_texts(caught.value), "an InvalidOption")
    assert "12345678" not in str(caught.value)


def test_a_mistyped_option_is_named_with_the_likely_one() -> None:
    with pytest.raises(InvalidOption, match="did you mean 'password'") as caught:
        resolve(f"etcd://h/r?passwrd={SECRET}", None, {})
    assert caught.value.value == REDACTED


def test_the_registry_and_its_parts_show_no_password() -> None:
    for url in (f"etcd://svc:{SECRET}@127.0.0.1:1/r", f"etcd://127.0.0.1:1/r?user=svc&password={SECRET}"):
        with discovery.connect(url) as registry:
            assert "***" in registry.url
            assert_clean(object_texts(registry), "a repr")


def test_secrets_are_read_from_files_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    monkeypatch.setenv("TEST_ETCD_PASSWORD", SECRET)
    for options in ({"password_file": str(secret_file)}, {"password_env": "TEST_ETCD_PASSWORD"}):
        resolved = resolve("etcd://svc@h/r", None, options)
        assert resolved.target.options["password"] == SECRET
        assert_clean([repr(resolved)], "a repr")
    query = urllib.parse.urlencode({"auth_digest_file": str(tmp_path / "digest")})
    (tmp_path / "digest").write_text(f"ops:{SECRET}")
    assert resolve(f"zk://h/r?{query}", None, {}).target.options["auth_digest"] == f"ops:{SECRET}"
    # A level's file gives way to a higher level's value, as any option does.
    assert resolve("etcd://svc@h/r", None, {"password_file": str(secret_file)}).target.options["password"] == SECRET
    assert (
        resolve(f"etcd://svc@h/r?password_file={secret_file}", None, {"password": "kw"}).target.options["password"]
        == "kw"
    )


@pytest.mark.parametrize(
    ("options", "option", "reason"),
    [
        ({"password_file": "/nonexistent/pw"}, "password_file", "cannot read"),
        ({"password_env": "TEST_UNSET_VARIABLE_X"}, "password_env", "not set"),
        ({"password_file": "EMPTY"}, "password_file", "empty"),
        ({"password": "x", "password_env": "HOME"}, "password_env", "one way only"),
        ({"password_file": 5}, "password_file", "expected a file path"),
    ],
)
def test_unreadable_secret_sources_are_refused(
    options: dict[str, object], option: str, reason: str, tmp_path: Path
) -> None:
    if options.get("password_file") == "EMPTY":
        (tmp_path / "empty").write_text("\n")
        options = {"password_file": str(tmp_path / "empty")}
    with pytest.raises(InvalidOption, match=reason) as caught:
        resolve("etcd://svc@h/r", None, options)
    assert caught.value.option == option


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_a_config_file_with_a_secret_readable_by_others_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exposed = tmp_path / "exposed.toml"
    exposed.write_text(f'[registry]\nurl = "etcd://127.0.0.1:1/r"\nuser = "svc"\npassword = "{SECRET}"\n')
    exposed.chmod(0o644)
    private = tmp_path / "private.toml"
    private.write_text(f'[registry]\nurl = "etcd://svc:{SECRET}@127.0.0.1:1/r"\n')
    private.chmod(0o600)
    harmless = tmp_path / "harmless.toml"
    harmless.write_text('[registry]\nurl = "etcd://127.0.0.1:1/r"\n')
    harmless.chmod(0o644)
    with caplog.at_level(logging.WARNING, "discovery.config"):
        for path in (exposed, exposed, private, harmless):
            resolve(None, path, {})
    warnings = [r.getMessage() for r in caplog.records if r.name == "discovery.config"]
    assert len(warnings) == 1 and "exposed.toml" in warnings[0] and "password" in warnings[0], warnings
    assert "chmod 600" in warnings[0] and "644" in warnings[0]
    assert_clean(warnings, "a warning")


def test_kazoos_records_are_masked() -> None:
    from discovery_zookeeper._kazoo_private import redacting_logger

    logger = redacting_logger()
    with everything_logged() as log:
        logger.debug("Sending request(xid=%s): %s", -4, Auth(0, "digest", f"ops:{SECRET}"))
        logger.debug("Sending request(xid=%s): %s", None, Connect(0, 0, 4000, 0, SECRET.encode(), False))
        logger.log(5, "    Using session_id: %r session_passwd: %s", 1, SECRET.encode())
    assert len(log.texts) == 6
    assert "auth='***'" in log.texts[0] and "passwd='***'" in log.texts[2]
    assert_clean(log.texts, "kazoo's log")


def test_zookeeper_checks_certificates_and_host_names_unless_told_and_then_warns(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import discovery_zookeeper._backend as zk_backend

    given: list[dict[str, object]] = []

    class Unreachable(Exception):
        pass

    def kazoo(**options: object) -> None:
        given.append(options)
        raise Unreachable

    monkeypatch.setattr(zk_backend, "KazooClient", kazoo)
    for query in ("use_ssl=true", "use_ssl=true&verify_certs=false"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, "discovery.zookeeper"), pytest.raises(Unreachable):
            zk_backend.ZooKeeperBackend(resolve(f"zk://127.0.0.1:1/r?{query}", None, {}).target)
        warned = any("verify_certs=false" in r.getMessage() for r in caplog.records)
        assert warned == ("verify_certs=false" in query)
    assert [(o["verify_certs"], o["check_hostname"]) for o in given] == [(True, True), (False, False)]


# -- against real servers ------------------------------------------------------------


@pytest.fixture(scope="module")
def secured_etcd() -> Iterator[EtcdCluster]:
    """An etcd of its own with user ``root`` (password :data:`SECRET`) and authentication on in both APIs."""
    with EtcdCluster(members=1) as cluster:
        cluster.enable_auth(SECRET)
        yield cluster


def _exercise(url: str, service: str) -> list[str]:
    """Register, read, watch and cache through ``url``; the reprs of everything met on the way."""
    with discovery.connect(url) as registry:
        with registry.watch(service) as watch, registry.cache(service) as cache:
            registration = registry.register(service, "a", address="10.0.0.1", port=80, ttl=5)
            event = watch.get(30)
            assert event is not None and event.instance_id == "a"
            assert cache.wait_for(lambda c: bool(c.instances(service)), 30)
            assert [i.id for i in registry.instances(service)] == ["a"]
            texts = object_texts(registry, registration, watch, cache, event)
            registration.close()
        metrics = pytest.importorskip("discovery.metrics")
        with metrics.enable(registry, services="") as exported:
            texts.append(exported.exposition()[0].decode())
        dashboard = pytest.importorskip("discovery.dashboard")
        texts.append(dashboard.public_url(registry.url))
    return texts


@pytest.mark.parametrize("scheme", ["etcd", "etcd2"])
def test_etcd_credentials_never_leak(
    scheme: str, secured_etcd: EtcdCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = f"/secrets-{uuid.uuid4().hex[:8]}"
    hosts = secured_etcd.hosts
    (tmp_path / "pw").write_text(SECRET + "\n")
    monkeypatch.setenv("TEST_ETCD_SECRET", SECRET)
    texts: list[str] = []
    with everything_logged() as log:
        for url in (
            f"{scheme}://root:{urllib.parse.quote(SECRET)}@{hosts}{root}",
            f"{scheme}://{hosts}{root}?user=root&password={SECRET}",
            f"{scheme}://root@{hosts}{root}?password_file={tmp_path / 'pw'}",
            f"{scheme}://root@{hosts}{root}?password_env=TEST_ETCD_SECRET",
        ):
            texts += _exercise(url, "svc")
        with discovery.connect(f"{scheme}://root:{WRONG}@{hosts}{root}", timeout=3) as registry:
            with pytest.raises(AuthenticationFailed) as caught:
                registry.register("svc", "b", ttl=5)
            texts += exception_texts(caught.value) + object_texts(registry)
        texts += _refused(f"{scheme}://{hosts}{root}?user=root&passwrd={SECRET}")
        texts += _refused(f"{scheme}://root:{SECRET}@{hosts.split(',')[0].split(':')[0]}:99999{root}")
        texts += _refused(f"{scheme}://root:{SECRET}/x@{hosts}{root}")
    assert any("urllib3" in text for text in log.texts), "nothing was logged: the test would prove nothing"
    assert_clean(log.texts, "the log")
    assert_clean(texts, "an exception or a repr")


@pytest.fixture
def zk_locked(zookeeper_cluster: ZooKeeperCluster) -> Iterator[str]:
    """A root whose ``locked`` znode only the digest ``ops`` / :data:`SECRET` may use."""
    from discovery_zookeeper._kazoo_private import redacting_logger

    root = f"/secrets-{uuid.uuid4().hex[:8]}"
    owner = KazooClient(
        hosts=zookeeper_cluster.hosts, auth_data=[("digest", f"ops:{SECRET}")], logger=redacting_logger()
    )
    owner.start(timeout=15)
    try:
        owner.ensure_path(root)
        owner.create(f"{root}/locked", b"", acl=[make_digest_acl("ops", SECRET, all=True)])
        yield root
        owner.delete(root, recursive=True)
    finally:
        owner.stop()
        owner.close()


def test_zookeeper_credentials_never_leak(
    zookeeper_cluster: ZooKeeperCluster, zk_locked: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, hosts = zk_locked, zookeeper_cluster.hosts
    (tmp_path / "digest").write_text(f"ops:{SECRET}\n")
    monkeypatch.setenv("TEST_ZK_DIGEST", f"ops:{SECRET}")
    texts: list[str] = []
    with everything_logged() as log:
        for url in (
            f"zk://ops:{urllib.parse.quote(SECRET)}@{hosts}{root}?session_timeout=4",
            f"zk://{hosts}{root}?session_timeout=4&auth_digest=ops:{SECRET}",
            f"zk://{hosts}{root}?session_timeout=4&auth_digest_file={tmp_path / 'digest'}",
            f"zk://{hosts}{root}?session_timeout=4&auth_digest_env=TEST_ZK_DIGEST",
        ):
            texts += _exercise(url, "locked/api")
        with discovery.connect(f"zk://ops:{WRONG}@{hosts}{root}?session_timeout=4") as registry:
            # The znodes the registry made below "locked" are open; "locked" itself is not.
            with pytest.raises(AuthenticationFailed) as caught:
                registry.snapshot("locked")
            texts += exception_texts(caught.value) + object_texts(registry)
            with pytest.raises(AuthenticationFailed) as refused:
                registry.register("locked/other", "b", ttl=4)
            texts += exception_texts(refused.value)
        texts += _refused(f"zk://{hosts}{root}?auth_digst=ops:{SECRET}")
        texts += _refused(f"zk://{hosts}{root}?auth_digest={SECRET}")
        texts += _refused(f"zk://ops:{SECRET}@127.0.0.1:99999{root}")
    sent = [text for text in log.texts if "Auth(" in text]
    assert sent and all("auth='***'" in text for text in sent), "kazoo's auth request was not logged, or unmasked"
    assert_clean(log.texts, "the log")
    assert_clean(texts, "an exception or a repr")


def _cli(args: list[str], cwd: Path, state_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISCOVERY_")}
    env.update(DISCOVERY_STATE_DIR=str(state_dir), COLUMNS="200", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "discovery.cli", "-vv", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_never_shows_a_secret(
    secured_etcd: EtcdCluster, zookeeper_cluster: ZooKeeperCluster, zk_locked: str, tmp_path: Path
) -> None:
    cwd, state_dir = tmp_path / "cwd", tmp_path / "state"
    cwd.mkdir()
    root = f"/secrets-{uuid.uuid4().hex[:8]}"
    etcd_url = f"etcd://root:{SECRET}@{secured_etcd.hosts}{root}"
    zk_url = f"zk://ops:{SECRET}@{zookeeper_cluster.hosts}{zk_locked}?session_timeout=4"
    runs = [
        (["--url", etcd_url, "define", "svc", "--min", "1"], 0),
        (["--url", etcd_url, "ls"], 0),
        (["--url", etcd_url, "tree"], 0),
        (["--url", zk_url, "ls", "locked"], 0),
        (["--url", f"etcd://root:{WRONG}@{secured_etcd.hosts}{root}", "ls"], 4),
        (["--url", f"etcd://{secured_etcd.hosts}{root}?user=root&passwrd={SECRET}", "ls"], 2),
        (["--url", f"etcd://root:{SECRET}@127.0.0.1:99999{root}", "ls"], 2),
    ]
    outputs: list[str] = []
    for args, code in runs:
        result = _cli(args, cwd, state_dir)
        assert result.returncode == code, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        outputs += [result.stdout, result.stderr]
    assert f"using etcd at etcd://root:***@{secured_etcd.hosts}{root}" in outputs[3]
    config = cwd / "discovery.toml"
    config.write_text(f'[registry]\nurl = "etcd://{secured_etcd.hosts}{root}"\nuser = "root"\npassword = "{SECRET}"\n')
    config.chmod(0o644)
    exposed = _cli(["ls"], cwd, state_dir)
    assert exposed.returncode == 0, exposed.stderr[-2000:]
    assert exposed.stderr.count("readable by group or others") == 1, exposed.stderr[-2000:]
    config.chmod(0o600)
    private = _cli(["ls"], cwd, state_dir)
    assert private.returncode == 0 and "readable by group or others" not in private.stderr
    outputs += [exposed.stdout, exposed.stderr, private.stdout, private.stderr]
    assert any("DEBUG" in text for text in outputs), "-vv logged nothing: the test would prove nothing"
    assert_clean(outputs, "the command's output")
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != config]
    assert_clean((p.read_text(errors="replace") for p in written), "a file the command wrote")
