"""CORS for the HTTP API and the Origin check of the WebSocket, one allowlist."""

from collections.abc import Iterator

import pytest
from app.config import Settings
from app.main import create_app
from fastapi.testclient import TestClient
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

ALLOWED = "https://app.example.com"


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
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/api/chat/message/ws", headers=headers),
        ):
            pass
        assert refused.value.code == 1008
