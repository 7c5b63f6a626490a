"""CORS and the WebSocket's Origin check, through nginx. compose.test.yaml
allows https://app.example.com; the page's own origin is always allowed. An
origin is scheme, host and port: nginx passes the client's Host with its port
(the published one, here a random free port) and the scheme it was reached by."""

import json
import ssl
from urllib.parse import urlsplit

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.integration.stack import Stack

ALLOWED = "https://app.example.com"
ORIGIN_NOT_ALLOWED = {
    "error": {"code": "origin_not_allowed", "message": "This origin may not open the chat WebSocket."}
}
CORS_REFUSED = {"error": {"code": "cors_refused", "message": "This cross-origin request is not allowed (origin)."}}


def assert_origin_refused(refused: pytest.ExceptionInfo[InvalidStatus]) -> None:
    """The handshake got the JSON 403, before the upgrade."""
    response = refused.value.response
    assert (response.status_code, response.headers["content-type"]) == (403, "application/json")
    assert response.body is not None and json.loads(response.body) == ORIGIN_NOT_ALLOWED


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
    if not allowed:
        assert (response.status_code, response.headers["content-type"]) == (400, "application/json")
        assert response.json() == CORS_REFUSED


def test_a_websocket_from_another_origin_is_refused_before_the_upgrade(stack: Stack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(stack.ws_url(), origin=Origin("https://evil.example"), subprotocols=stack.ws_protocols())
    assert_origin_refused(refused)


@pytest.mark.parametrize("origin", [ALLOWED, "same-origin"])
def test_a_websocket_from_an_allowed_origin_is_served(stack: Stack, origin: str) -> None:
    page_origin = stack.url(path="") if origin == "same-origin" else origin
    with connect(stack.ws_url(), origin=Origin(page_origin), subprotocols=stack.ws_protocols()) as socket:
        socket.send('{"message": "hi"}')
        assert '"event":"start"' in str(socket.recv(timeout=10))


def other_origin(stack: Stack, other: str) -> str:
    """The page's host with another port or scheme."""
    page = urlsplit(stack.url(path=""))
    assert page.hostname is not None and page.port is not None
    if other == "port":
        return f"http://{page.hostname}:{page.port + 1 if page.port < 65535 else page.port - 1}"
    return f"https://{page.hostname}:{page.port}"


@pytest.mark.parametrize("other", ["port", "scheme"])
def test_a_websocket_from_the_same_host_on_another_port_or_scheme_is_refused(stack: Stack, other: str) -> None:
    # Same host name: the old check (host names only) let these in.
    with pytest.raises(InvalidStatus) as refused:
        connect(stack.ws_url(), origin=Origin(other_origin(stack, other)), subprotocols=stack.ws_protocols())
    assert_origin_refused(refused)


def test_the_page_served_over_https_is_same_origin_with_its_websocket(stack: Stack) -> None:
    page_origin = stack.https_url(path="")
    url = stack.https_url(path="/api/chat/message/ws").replace("https://", "wss://", 1)
    trust = ssl.create_default_context(cafile=stack.tls_certificate)
    with connect(url, origin=Origin(page_origin), subprotocols=stack.ws_protocols(), ssl=trust) as socket:
        socket.send('{"message": "hi"}')
        assert '"event":"start"' in str(socket.recv(timeout=10))
    # The same host and port over plain HTTP is another origin. (Once in a
    # full CI run this handshake got no answer within websockets' 10 s open
    # timeout, which did not recur in 15 runs of its own: one more try, so
    # that only a real answer, 403, passes.)
    other = Origin(page_origin.replace("https://", "http://", 1))
    for attempt in (1, 2):
        try:
            with pytest.raises(InvalidStatus) as refused:
                connect(url, origin=other, subprotocols=stack.ws_protocols(), ssl=trust)
            break
        except TimeoutError:
            if attempt == 2:
                raise
    assert_origin_refused(refused)
