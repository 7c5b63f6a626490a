"""No metrics endpoint is reachable through the proxy's public ports, and the
services behind the proxy publish no port but the loopback ones listed below.

The API's /metrics and nginx's stub_status are for Prometheus's exporters on
the compose network (services/nginx/conf.d/status.conf). Through 8080 and
8443 both paths are an ordinary 404, whatever the spelling; the internal
stub_status does answer (the exporter reads it: test_observability.py).
"""

import json
import subprocess

import pytest
import requests

from tests.integration.stack import Stack

PATHS = [
    "/metrics",
    "/metrics/",
    "/stub_status",
    "/api/metrics",
    "/api/../metrics",
    "/healthz/../metrics",
    "/%6Detrics",  # "m" percent-encoded
]


@pytest.mark.parametrize("path", PATHS, ids=PATHS)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_metrics_paths_are_404_through_the_proxy(stack: Stack, scheme: str, path: str) -> None:
    origin = stack.url(path="") if scheme == "http" else stack.https_url(path="")
    # requests would normalise "/../"; a prepared request sends the path as written.
    session = requests.Session()
    request = requests.Request("GET", origin + "/").prepare()
    request.url = origin + path
    response = session.send(request, timeout=5, verify=str(stack.tls_certificate))
    assert response.status_code == 404, response.text[:200]
    assert "Active connections" not in response.text  # stub_status's body
    assert "chat_" not in response.text  # the API's metrics


def test_the_internal_status_port_is_not_published(stack: Stack) -> None:
    (nginx,) = stack.containers("nginx")
    ports = json.loads(_inspect_ports(nginx))
    # Published ports map to a list of host bindings; 8081 has none (or is absent).
    assert ports.get("8080/tcp"), ports  # the check can see a published port
    assert not ports.get("8081/tcp"), ports


# The host ports each service behind the proxy may publish in the stack
# under test, all on loopback: Prometheus's query port (compose.yaml, for
# `make up OBSERVE=1`), and Valkey's, which compose.test.yaml adds for the
# store's own tests (never compose.yaml). The rest publish nothing.
PUBLISHED: dict[str, set[str]] = {
    "api": set(),
    "model": set(),
    "valkey": {"6379/tcp"},
    "prometheus": {"9090/tcp"},
    "nginx-exporter": set(),
    "redis-exporter": set(),
}
LOOPBACK = {"127.0.0.1", "::1"}


@pytest.mark.parametrize(("service", "allowed"), list(PUBLISHED.items()), ids=list(PUBLISHED))
def test_services_behind_the_proxy_publish_only_their_loopback_ports(
    stack: Stack, service: str, allowed: set[str]
) -> None:
    containers = stack.containers(service)
    assert containers, f"no {service} container is running"
    for container in containers:
        ports = json.loads(_inspect_ports(container))
        # A port the image exposes but nothing publishes maps to null.
        published = {port: bindings for port, bindings in ports.items() if bindings}
        assert set(published) == allowed, f"{service}: {published}"
        for port, bindings in published.items():
            assert {binding["HostIp"] for binding in bindings} <= LOOPBACK, f"{service} {port}: {bindings}"


def _inspect_ports(container: str) -> str:
    done = subprocess.run(
        ["docker", "inspect", "--format", "{{json .NetworkSettings.Ports}}", container],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout
