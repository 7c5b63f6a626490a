"""CORS and the WebSocket's Origin check, through nginx. compose.test.yaml
allows https://app.example.com; the page's own origin is always allowed."""

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.integration.stack import Stack

ALLOWED = "https://app.example.com"


@pytest.mark.parametrize(("origin", "allowed"), [(ALLOWED, True), ("https://evil.example", False)])
def test_cors_preflight_answers_only_allowed_origins(stack: Stack, origin: str, allowed: bool) -> None:
    response = requests.options(
        stack.url(),
        headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
        timeout=10,
    )  # fmt: skip
    assert response.headers.get("access-control-allow-origin") == (origin if allowed else None)
    assert "access-control-allow-credentials" not in response.headers


def test_a_websocket_from_another_origin_is_refused_before_the_upgrade(stack: Stack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(stack.ws_url(), origin=Origin("https://evil.example"), subprotocols=stack.ws_protocols())
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", [ALLOWED, "same-origin"])
def test_a_websocket_from_an_allowed_origin_is_served(stack: Stack, origin: str) -> None:
    page_origin = stack.url(path="") if origin == "same-origin" else origin
    with connect(stack.ws_url(), origin=Origin(page_origin), subprotocols=stack.ws_protocols()) as socket:
        socket.send('{"message": "hi"}')
        assert '"event":"start"' in str(socket.recv(timeout=10))
