"""CORS for the HTTP API and the Origin check of the WebSocket, one allowlist."""

from collections.abc import Iterator

import pytest
from app.config import Settings
from app.main import create_app
from fastapi.testclient import TestClient
from pydantic import ValidationError
from starlette.testclient import WebSocketDenialResponse

ALLOWED = "https://app.example.com"
# The answer to a handshake from another origin, before the upgrade.
ORIGIN_REFUSED = {"error": {"code": "origin_not_allowed", "message": "This origin may not open the chat WebSocket."}}


def assert_origin_refused(refused: pytest.ExceptionInfo[WebSocketDenialResponse]) -> None:
    response = refused.value
    assert (response.status_code, response.headers["content-type"]) == (403, "application/json")
    assert response.json() == ORIGIN_REFUSED


@pytest.fixture
def client(settings: Settings, token: str) -> Iterator[TestClient]:
    # The CORS middleware reads its allowlist when the app is built.
    app = create_app(settings.model_copy(update={"cors_origins": [ALLOWED]}))
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as test_client:
        yield test_client


def preflight(client: TestClient, origin: str) -> dict[str, str]:
    response = client.options(
        "/api/chat/message/stream",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, last-event-id"},
    )  # fmt: skip
    return dict(response.headers)


def test_an_allowed_origin_gets_cors_headers(client: TestClient) -> None:
    headers = preflight(client, ALLOWED)
    assert headers["access-control-allow-origin"] == ALLOWED
    assert "access-control-allow-credentials" not in headers


def test_another_origin_gets_none(client: TestClient) -> None:
    assert "access-control-allow-origin" not in preflight(client, "https://evil.example")


def test_a_refused_preflight_is_json(client: TestClient) -> None:
    response = client.options(
        "/api/chat/message/stream",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert (response.status_code, response.headers["content-type"]) == (400, "application/json")
    assert response.json() == {
        "error": {"code": "cors_refused", "message": "This cross-origin request is not allowed (origin)."}
    }


@pytest.mark.parametrize("origin", ["*", "app.example.com", "https://app.example.com/path"])
def test_only_explicit_origins_are_accepted(origin: str) -> None:
    with pytest.raises(ValidationError):
        Settings(cors_origins=[origin])


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        pytest.param(None, True, id="no-origin"),
        pytest.param("http://testserver", True, id="same-origin"),
        pytest.param(ALLOWED, True, id="allowlisted"),
        pytest.param("https://evil.example", False, id="other-origin"),
    ],
)
def test_websocket_origin_check(client: TestClient, token: str, origin: str | None, accepted: bool) -> None:
    headers = {"origin": origin} if origin else {}
    protocols = ["chat.v1", f"bearer.{token}"]
    if accepted:
        with client.websocket_connect("/api/chat/message/ws", headers=headers, subprotocols=protocols) as ws:
            ws.send_json({"message": "hi"})
            assert ws.receive_json()["event"] == "start"
    else:
        with (
            pytest.raises(WebSocketDenialResponse) as refused,
            # With a valid token: the origin alone must be the reason.
            client.websocket_connect("/api/chat/message/ws", headers=headers, subprotocols=protocols),
        ):
            pass
        assert_origin_refused(refused)


@pytest.mark.parametrize(
    ("url_scheme", "host", "origin", "accepted"),
    [
        # The page's own origin: the scheme the client used and the Host
        # header, whose port may be absent (the scheme's default).
        pytest.param("ws", "testserver", "http://testserver", True, id="same-origin"),
        pytest.param("ws", "testserver:80", "http://testserver", True, id="host-with-default-port"),
        pytest.param("ws", "testserver:8080", "http://testserver:8080", True, id="same-origin-other-port"),
        pytest.param("wss", "testserver", "https://testserver", True, id="same-origin-https"),
        pytest.param("wss", "testserver:8443", "https://testserver:8443", True, id="same-origin-https-port"),
        pytest.param("ws", "TestServer:8080", "http://testserver:8080", True, id="host-in-upper-case"),
        pytest.param("ws", "[::1]:8080", "http://[::1]:8080", True, id="ipv6"),
        # Same host name, another origin: refused (they were let in).
        pytest.param("ws", "testserver", "http://testserver:8080", False, id="other-port"),
        pytest.param("ws", "testserver:8080", "http://testserver", False, id="other-port-default"),
        pytest.param("ws", "testserver", "https://testserver", False, id="other-scheme"),
        pytest.param("wss", "testserver", "http://testserver", False, id="http-page-to-https"),
        pytest.param("wss", "testserver:8443", "https://testserver", False, id="behind-a-proxy-other-port"),
        # Not an origin a browser sends: matches nothing.
        pytest.param("ws", "testserver", "null", False, id="null"),
        pytest.param("ws", "testserver", "http://testserver:80", False, id="default-port-spelled-out"),
        pytest.param("ws", "testserver", "http://testserver/", False, id="with-a-path"),
        pytest.param("ws", "testserver", "http://user@testserver", False, id="with-credentials"),
        pytest.param("ws", "testserver", "ws://testserver", False, id="websocket-scheme"),
        pytest.param("ws", "testserver", "http://testserver:99999", False, id="port-out-of-range"),
        pytest.param("ws", "testserver:x", "http://testserver", False, id="malformed-host"),
        # CHAT_CORS_ORIGINS entries match exactly, whatever the Host.
        pytest.param("ws", "testserver", ALLOWED, True, id="allowlisted"),
        pytest.param("ws", "testserver", ALLOWED + ":443", False, id="allowlisted-spelled-otherwise"),
        pytest.param("ws", "testserver", "http://app.example.com", False, id="allowlisted-host-other-scheme"),
    ],
)
def test_the_websocket_origin_is_scheme_host_and_port(
    client: TestClient, token: str, url_scheme: str, host: str, origin: str, accepted: bool
) -> None:
    url = f"{url_scheme}://testserver/api/chat/message/ws"
    headers = {"host": host, "origin": origin}
    protocols = ["chat.v1", f"bearer.{token}"]
    if accepted:
        with client.websocket_connect(url, headers=headers, subprotocols=protocols) as ws:
            ws.send_json({"message": "hi"})
            assert ws.receive_json()["event"] == "start"
    else:
        with (
            pytest.raises(WebSocketDenialResponse) as refused,
            client.websocket_connect(url, headers=headers, subprotocols=protocols),
        ):
            pass
        assert_origin_refused(refused)
