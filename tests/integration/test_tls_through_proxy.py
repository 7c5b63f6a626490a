"""HTTPS with HTTP/2 on the proxy's second port: replies stream over it event by
event (and the same check catches a buffering proxy over HTTP/2), responses
carry no hop-by-hop headers, and HSTS is sent over HTTPS only (nginx's own,
or a trusted load balancer's)."""

import socket
import ssl
from urllib.parse import urlsplit

import httpx2
import pytest
import requests

from streamcheck import clients
from streamcheck.timing import Kind, bursts, classify
from tests.integration.stack import REPLY_TOKENS, TOKEN_DELAY_SECONDS, Stack

PAYLOAD = {"message": "over HTTP/2, please"}
# Connection-specific fields: forbidden in HTTP/2 (RFC 9113, 8.2.2).
HOP_BY_HOP = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]


@pytest.fixture
def trust(stack: Stack) -> ssl.SSLContext:
    # One per test: httpx2 sets ALPN (h2) on the context it is given, and a
    # WebSocket handshake over a context that offers h2 would get HTTP/2.
    return ssl.create_default_context(cafile=stack.tls_certificate)


def test_a_reply_streams_over_http2_event_by_event(stack: Stack, trust: ssl.SSLContext) -> None:
    m = clients.with_httpx(stack.https_url(), PAYLOAD, headers=stack.auth, http2=True, verify=trust)

    assert m.headers[":protocol"] == "HTTP/2"
    verdict = classify(m)
    assert verdict.kind is Kind.STREAMING, verdict
    times = m.times("token")
    assert len(times) == REPLY_TOKENS
    assert times[0] < times[-1] / 4, times
    assert times[-1] - times[0] >= 0.6 * REPLY_TOKENS * TOKEN_DELAY_SECONDS, times
    assert len(bursts(times)) >= 0.9 * REPLY_TOKENS, times


def test_the_same_check_catches_a_proxy_that_buffers_over_http2(stack: Stack, trust: ssl.SSLContext) -> None:
    m = clients.with_httpx(stack.https_url("proxy-buffering"), PAYLOAD, headers=stack.auth, http2=True, verify=trust)

    assert m.headers[":protocol"] == "HTTP/2"
    assert len(m.times("token")) == REPLY_TOKENS  # the whole reply, late
    assert classify(m).kind is Kind.BUFFERED


def test_curl_streams_over_http2(stack: Stack) -> None:
    m = clients.with_curl(
        stack.https_url(), PAYLOAD, headers=stack.auth, extra_args=("--http2", "--cacert", str(stack.tls_certificate))
    )

    assert m.status == 200, m.failure
    assert classify(m).kind is Kind.STREAMING


@pytest.mark.parametrize("path", [pytest.param("/api/chat/message/stream", id="stream"), pytest.param("/", id="page")])
def test_http2_responses_have_no_hop_by_hop_headers(stack: Stack, trust: ssl.SSLContext, path: str) -> None:
    # h2 (under httpx2) would refuse such a response outright; the assertion
    # says what is checked.
    with httpx2.Client(http1=False, http2=True, verify=trust, timeout=30) as client:
        if path == "/":
            response = client.get(stack.https_url(path=path))
        else:
            response = client.post(stack.https_url(path=path), json=PAYLOAD, headers=stack.auth)
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert [name for name in HOP_BY_HOP if name in response.headers] == []


def test_https_responses_carry_hsts_and_http_responses_do_not(stack: Stack) -> None:
    https = requests.get(stack.https_url(path="/"), verify=str(stack.tls_certificate), timeout=10)
    http = requests.get(stack.url(path="/"), timeout=10)

    assert https.headers["strict-transport-security"] == "max-age=63072000"
    assert "strict-transport-security" not in http.headers
    for response in (https, http):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"].startswith("default-src 'self';")


@pytest.mark.parametrize(
    ("service", "headers", "hsts"),
    [
        pytest.param(
            "proxy-trusting",
            {"X-Forwarded-For": "198.51.100.40", "X-Forwarded-Proto": "https"},
            True,
            id="trusted-balancer-terminated-tls",
        ),
        pytest.param("proxy-trusting", {"X-Forwarded-For": "198.51.100.41"}, False, id="trusted-balancer-plain-http"),
        pytest.param(
            "proxy-edge",
            {"X-Forwarded-For": "198.51.100.42", "X-Forwarded-Proto": "https"},
            False,
            id="forged-by-a-client",
        ),
    ],
)
def test_hsts_follows_the_scheme_a_trusted_balancer_reports(
    stack: Stack, service: str, headers: dict[str, str], hsts: bool
) -> None:
    # Plain HTTP to nginx, as from a load balancer that terminated TLS.
    response = requests.get(stack.url(service, "/"), headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.headers.get("strict-transport-security") == ("max-age=63072000" if hsts else None)


@pytest.mark.parametrize(
    ("status", "path", "method"),
    [
        pytest.param(401, "/api/chat/message/stream", "POST", id="api-401"),
        pytest.param(404, "/api/nowhere", "GET", id="nginx-404"),
    ],
)
def test_hsts_is_on_error_responses_too(stack: Stack, status: int, path: str, method: str) -> None:
    url = stack.https_url(path=path)
    response = requests.request(method, url, json={}, verify=str(stack.tls_certificate), timeout=10)
    assert response.status_code == status
    assert response.headers["strict-transport-security"] == "max-age=63072000"


@pytest.mark.parametrize(
    ("maximum", "expected"),
    [
        pytest.param(ssl.TLSVersion.TLSv1_3, "TLSv1.3", id="tls1.3"),
        pytest.param(ssl.TLSVersion.TLSv1_2, "TLSv1.2", id="tls1.2"),
    ],
)
def test_tls_versions_and_alpn(stack: Stack, maximum: ssl.TLSVersion, expected: str) -> None:
    context = ssl.create_default_context(cafile=stack.tls_certificate)
    context.maximum_version = maximum
    context.set_alpn_protocols(["h2", "http/1.1"])
    address = urlsplit(stack.https_url())
    assert address.hostname and address.port
    with (
        socket.create_connection((address.hostname, address.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=address.hostname) as tls,
    ):
        assert tls.version() == expected
        assert tls.selected_alpn_protocol() == "h2"
        negotiated = tls.cipher()
        assert negotiated is not None
        cipher = negotiated[0]
        # TLS 1.2: only forward-secret (ECDHE) AEAD suites are offered.
        assert expected == "TLSv1.3" or (cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA" in cipher))


def test_the_websocket_fallback_works_over_https(stack: Stack, trust: ssl.SSLContext) -> None:
    url = stack.https_url(path="/api/chat/message/ws").replace("https://", "wss://", 1)
    m = clients.with_websocket(url, PAYLOAD, token=stack.token, tls=trust)

    assert m.status == 1000, m.failure
    assert len(m.times("token")) == REPLY_TOKENS


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/", 200, id="page"),
        pytest.param("GET", "/nothing-here", 404, id="proxy-404"),
        pytest.param("TRACE", "/api/chat/message/stream", 405, id="proxy-405"),
        pytest.param("POST", "/index.html", 405, id="static-405"),
        pytest.param("GET", "/api/chat/message/stream", 405, id="api-405"),
        pytest.param("POST", "/api/chat/message/stream", 401, id="api-401"),
    ],
)
def test_each_header_comes_once_where_it_belongs(
    stack: Stack, trust: ssl.SSLContext, method: str, path: str, status: int
) -> None:
    """Security headers on every response, once; the page's policies on the page only;
    Allow once on every 405, whoever made it."""
    response = requests.request(method, stack.https_url(path=path), verify=str(stack.tls_certificate), timeout=10)
    assert response.status_code == status
    raw = response.raw.headers
    assert raw.getlist("x-content-type-options") == ["nosniff"]
    assert raw.getlist("strict-transport-security") == ["max-age=63072000"]
    assert bool(raw.getlist("content-security-policy")) == (path == "/")
    assert len(raw.getlist("allow")) == (1 if status == 405 else 0)
