"""A real Prometheus (Debian's) discovers the registered instances through the dashboard and scrapes its metrics.

The configuration is the README's, verbatim but for the dashboard's address
(the test serves it on a free port): instances registered on etcd appear in
Prometheus's active targets, labelled by service and zone through the
README's relabelling, and go once their registrant dies; the dashboard's
``/metrics`` is scraped with ``up == 1``, and a discovery metric queried
through Prometheus has the expected value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

import discovery
from discovery.dashboard import create_app, running
from discovery.servers import EtcdCluster
from discovery.servers._http import HttpError
from discovery.testing.prometheus import PrometheusServer
from discovery.testing.waiting import wait_until

README = Path(__file__).resolve().parent.parent / "README.md"
_README_ADDRESS = "127.0.0.1:8080"
_TIMEOUT = 90.0


def readme_config() -> str:
    """The Prometheus configuration the README shows (the YAML block after ``<!-- prometheus-config -->``)."""
    found = re.search(r"<!-- prometheus-config -->\n```yaml\n(.*?)```", README.read_text(), flags=re.S)
    assert found, "the README's Prometheus configuration is missing"
    return found.group(1)


def _targets(prometheus: PrometheusServer, job: str) -> list[dict[str, Any]]:
    return [t for t in prometheus.targets() if t["labels"].get("job") == job]


def test_prometheus_discovers_registered_instances_and_scrapes_the_dashboard(etcd_cluster: EtcdCluster) -> None:
    url = etcd_cluster.url("etcd", "/prometheus-test")
    with (
        discovery.connect(url) as registry,
        discovery.connect(url) as registrant,
        running(create_app(registry, "")) as dashboard,
    ):
        address = dashboard.removeprefix("http://").rstrip("/")
        config = readme_config()
        assert _README_ADDRESS in config
        registrant.register("buzz/api", "a", address="127.0.0.1", port=18081, meta={"zone": "eu-1"}, ttl=2)
        registrant.register("buzz/api", "b", address="127.0.0.1", port=18082, meta={"zone": "eu-1"}, ttl=2)
        registry.define("buzz/api", 2)
        with PrometheusServer(config.replace(_README_ADDRESS, address)) as prometheus:
            found = wait_until(
                lambda: (
                    {t["scrapeUrl"] for t in _targets(prometheus, "registered-services")}
                    == {"http://127.0.0.1:18081/metrics", "http://127.0.0.1:18082/metrics"}
                ),
                timeout=_TIMEOUT,
                message=f"the registered instances as Prometheus targets; log: {prometheus.log_tail()}",
                ignore=(HttpError,),
            )
            assert found
            labels = _targets(prometheus, "registered-services")[0]["labels"]
            assert (labels["service"], labels["zone"]) == ("buzz/api", "eu-1")

            wait_until(
                lambda: prometheus.query('up{job="discovery-dashboard"}')[0]["value"][1] == "1",
                timeout=_TIMEOUT,
                message="the dashboard's /metrics scraped with up == 1",
                ignore=(HttpError, IndexError),
            )
            wait_until(
                lambda: prometheus.query('discovery_service_instances{service="buzz/api"}')[0]["value"][1] == "2",
                timeout=_TIMEOUT,
                message="discovery_service_instances of buzz/api through Prometheus",
                ignore=(HttpError, IndexError),
            )

            registrant.backend.abandon()  # the registrant dies: its lease expires after its ttl
            wait_until(
                lambda: not _targets(prometheus, "registered-services"),
                timeout=_TIMEOUT,
                message="the dead registrant's instances gone from Prometheus's targets",
                ignore=(HttpError,),
            )
            wait_until(
                lambda: (
                    prometheus.query('discovery_service_health{service="buzz/api",health="down"}')[0]["value"][1] == "1"
                ),
                timeout=_TIMEOUT,
                message="buzz/api down through Prometheus",
                ignore=(HttpError, IndexError),
            )


def test_the_readme_config_is_valid_prometheus_yaml() -> None:
    document = yaml.safe_load(readme_config())
    jobs = {job["job_name"]: job for job in document["scrape_configs"]}
    assert jobs["registered-services"]["http_sd_configs"][0]["url"].startswith(
        f"http://{_README_ADDRESS}/sd/prometheus"
    )
