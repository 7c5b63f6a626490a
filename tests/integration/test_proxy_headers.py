"""What the proxy adds, passes on and keeps out, seen from the client."""

import re

import pytest
import requests

from streamcheck import clients
from tests.integration.stack import Stack

PAYLOAD = {"message": "headers?"}


@pytest.fixture(scope="module")
def stream_headers(stack: Stack) -> dict[str, str]:
    return clients.with_requests(stack.url(), PAYLOAD, headers=stack.auth).headers


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("content-type", "text/event-stream; charset=utf-8", id="content-type"),
        pytest.param("cache-control", "no-cache, no-transform", id="cache-control"),
        pytest.param("x-accel-buffering", "no", id="x-accel-buffering-passed-on"),
        pytest.param("transfer-encoding", "chunked", id="chunked"),
        pytest.param("server", "nginx", id="no-version-in-server"),
    ],
)
def test_stream_response_header(stream_headers: dict[str, str], name: str, value: str) -> None:
    assert stream_headers.get(name) == value


@pytest.mark.parametrize("name", ["content-length", "content-encoding"])
def test_stream_response_has_no(stream_headers: dict[str, str], name: str) -> None:
    assert name not in stream_headers


def test_the_request_id_is_made_by_the_proxy_not_the_client(stack: Stack) -> None:
    m = clients.with_requests(stack.url(), PAYLOAD, headers={**stack.auth, "X-Request-ID": "chosen-by-client"})
    assert re.fullmatch(r"[0-9a-f]{32}", m.headers["x-request-id"]), m.headers


def test_other_locations_keep_normal_proxying(stack: Stack) -> None:
    # Location-specific streaming: the OpenAPI document is an ordinary,
    # buffered and compressed response.
    response = requests.get(stack.url(path="/api/openapi.json"), headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "/api/chat/message/stream" in response.json()["paths"]


def test_the_api_is_reachable_only_through_the_proxy(stack: Stack) -> None:
    # `expose` lists the port with no host side (0); `ports` would publish it.
    publishers = stack.compose.get_container("api").Publishers
    assert publishers and all(p.PublishedPort == 0 for p in publishers), publishers


@pytest.mark.parametrize("service", ["nginx", "api"])
def test_services_run_unprivileged(stack: Stack, service: str) -> None:
    uid, _, code = stack.compose.exec_in_container(["id", "-u"], service_name=service)
    assert code == 0 and uid.strip() != "0"


def test_the_running_configuration_passes_nginx_t(stack: Stack) -> None:
    _, stderr, code = stack.compose.exec_in_container(["nginx", "-t"], service_name="nginx")
    assert code == 0, stderr
    assert "syntax is ok" in stderr and "test is successful" in stderr
