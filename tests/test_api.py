"""The public API surface, configuration precedence and plugin loading."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import discovery
from discovery import Capability, CapabilityMissing, ConfigurationError, InvalidOption, UnknownBackend, connect
from discovery.memory import MemoryBackend


def test_all_is_sorted_and_importable() -> None:
    assert discovery.__all__ == sorted(discovery.__all__)
    for name in discovery.__all__:
        assert getattr(discovery, name) is not None


def test_every_public_callable_is_documented() -> None:
    for name in discovery.__all__:
        obj = getattr(discovery, name)
        assert inspect.getdoc(obj), f"{name} has no docstring"
    for name, member in inspect.getmembers(discovery.Registry, inspect.isfunction):
        if not name.startswith("_"):
            assert "Raises:" in (member.__doc__ or "") or name in {"close", "registrations"}, name


def test_error_tree_has_one_root() -> None:
    errors = [getattr(discovery, n) for n in discovery.__all__ if n.endswith(("Error", "Registered", "Missing"))]
    for error in errors:
        assert issubclass(error, discovery.DiscoveryError)


def test_default_is_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISCOVERY_URL", raising=False)
    monkeypatch.delenv("DISCOVERY_CONFIG", raising=False)
    with connect() as registry:
        assert isinstance(registry.backend, MemoryBackend)
        assert registry.url == "memory://"


def test_available_backends_lists_memory() -> None:
    assert "memory" in discovery.available_backends()


def test_unknown_scheme_names_installed_and_distribution() -> None:
    with pytest.raises(UnknownBackend) as caught:
        connect("consul://127.0.0.1:8500")
    assert caught.value.scheme == "consul" and "memory" in caught.value.installed
    assert caught.value.hint is None


def test_known_but_missing_backend_names_its_distribution() -> None:
    error = UnknownBackend("etcd", ["memory"], "discovery-registry-etcd")
    assert "discovery-registry-etcd" in str(error)


def test_unknown_option_is_named() -> None:
    with pytest.raises(InvalidOption) as caught:
        connect("memory://x?colour=blue")
    assert caught.value.option == "colour" and "history_window" in str(caught.value)


def test_option_types_are_checked() -> None:
    with pytest.raises(InvalidOption) as caught:
        connect("memory://x?history_window=lots")
    assert caught.value.option == "history_window"
    with pytest.raises(InvalidOption):
        connect("memory://x", buffer_size=0)
    with pytest.raises(InvalidOption):
        connect("not a url")


def test_precedence_file_then_url_then_keywords(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "discovery.toml"
    config.write_text('[registry]\nurl = "memory://from-file?default_ttl=4"\nbuffer_size = 7\ndefault_ttl = 3\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISCOVERY_URL", raising=False)
    monkeypatch.delenv("DISCOVERY_CONFIG", raising=False)
    with connect() as registry:
        assert registry.url == "memory://from-file?default_ttl=4"
        assert registry.settings.buffer_size == 7
        assert registry.settings.default_ttl == 4.0
    with connect(default_ttl=2) as registry:
        assert registry.settings.default_ttl == 2.0
    monkeypatch.setenv("DISCOVERY_URL", "memory://from-env")
    with connect() as registry:
        assert registry.url == "memory://from-env"
    with connect("memory://explicit") as registry:
        assert registry.url == "memory://explicit"


def test_config_path_from_argument_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[registry]\nurl = "memory://other"\n')
    monkeypatch.delenv("DISCOVERY_URL", raising=False)
    with connect(config=other) as registry:
        assert registry.url == "memory://other"
    monkeypatch.setenv("DISCOVERY_CONFIG", str(other))
    with connect() as registry:
        assert registry.url == "memory://other"
    with pytest.raises(ConfigurationError):
        connect(config=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[registry\n")
    with pytest.raises(ConfigurationError):
        connect(config=broken)


def test_required_capability_checked_at_load() -> None:
    with connect("memory://caps", require={Capability.EXPIRY_CAUSE, "atomic-snapshot"}) as registry:
        assert Capability.EXPIRY_CAUSE in registry.capabilities
    with pytest.raises(InvalidOption):
        connect("memory://caps", require={"teleportation"})


def test_capability_missing_carries_fields() -> None:
    error = CapabilityMissing("zookeeper", ["expiry-cause"])
    assert error.backend == "zookeeper" and error.missing == ("expiry-cause",)


def test_capabilities_are_documented() -> None:
    for capability in Capability:
        assert capability.description


def test_closed_registry_refuses_calls() -> None:
    registry = connect("memory://closed")
    registry.close()
    registry.close()
    with pytest.raises(discovery.RegistryClosed):
        registry.register("svc", "a")


@pytest.mark.parametrize(
    ("items", "error", "field"),
    [
        ([discovery.Instance("ok", "a"), discovery.Instance("bad//path", "b")], discovery.InvalidName, "service"),
        ([discovery.Instance("ok", "a"), discovery.Instance("ok", "b", port=70000)], discovery.InvalidValue, "port"),
        ([discovery.Instance("ok", "a"), discovery.Instance("ok", "a")], discovery.InvalidValue, "instances"),
        ([discovery.Instance("ok", "a"), ("ok", "b")], discovery.InvalidValue, "instances"),
    ],
    ids=["bad-service", "bad-port", "repeated-id", "not-an-instance"],
)
def test_register_many_refuses_a_bad_item_before_writing_anything(
    items: list[discovery.Instance], error: type[discovery.DiscoveryError], field: str
) -> None:
    with connect("memory://register-many-refusal") as reg:
        before = reg.snapshot()
        with pytest.raises(error) as caught:
            reg.register_many(items, ttl=5)
        assert getattr(caught.value, "field", None) == field
        assert reg.snapshot() == before
        assert reg.registrations() == []


def test_register_many_writes_more_than_a_batch_and_updates_ids_it_holds() -> None:
    with connect("memory://register-many-batches") as reg:
        first = reg.register("bulk", "i0", meta={"v": 1}, ttl=5)
        wanted = [discovery.Instance("bulk", f"i{n}", meta={"v": 2}) for n in range(MemoryBackend.max_batch * 2 + 1)]
        made = reg.register_many(wanted, ttl=5)
        assert made[0] is first and dict(first.instance.meta) == {"v": 2}
        assert len(reg.instances("bulk")) == len(wanted)
        assert {r.key for r in reg.registrations()} == {f"bulk/i{n}" for n in range(len(wanted))}
