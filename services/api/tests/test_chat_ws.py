import json
import logging
from typing import Any

import anyio
import pytest
from app.config import Settings
from app.main import app
from app.twin import reply_tokens
from fastapi.testclient import TestClient
from raw_asgi import run_websocket
from starlette.testclient import WebSocketDenialResponse
from starlette.types import Message
from starlette.websockets import WebSocketDisconnect
from uvicorn.protocols.utils import ClientDisconnected

URL = "/api/chat/message/ws"


def protocols(token: str) -> list[str]:
    return ["chat.v1", f"bearer.{token}"]


def converse(client: TestClient, request: Any, token: str) -> list[dict[str, Any]]:
    frames = []
    with client.websocket_connect(URL, subprotocols=protocols(token)) as ws:
        ws.send_text(request if isinstance(request, str) else json.dumps(request))
        try:
            while True:
                frames.append(json.loads(ws.receive_text()))
        except WebSocketDisconnect as closed:
            assert closed.code == 1000
    return frames


def test_the_reply_arrives_as_the_same_events(client: TestClient, token: str) -> None:
    frames = converse(client, {"message": "hi"}, token)
    assert [f["event"] for f in frames] == ["start", *["token"] * 12, "end"]
    assert "".join(f["data"]["text"] for f in frames if f["event"] == "token") == "".join(reply_tokens(12))
    message_id = frames[0]["data"]["message_id"]
    assert [f["id"] for f in frames[1:-1]] == [f"{message_id}:{i}" for i in range(12)]


def test_a_websocket_resumes_after_the_last_event_id(client: TestClient, token: str) -> None:
    first = converse(client, {"message": "hi"}, token)
    resumed = converse(client, {"message": "hi", "last_event_id": first[5]["id"]}, token)
    assert resumed[0]["data"]["resumed_from"] == 5
    assert [f["data"]["index"] for f in resumed if f["event"] == "token"] == list(range(5, 12))


@pytest.mark.parametrize(
    ("request_frame", "code", "reason"),
    [
        pytest.param("{nope", 1007, "invalid_json: the frame is not valid JSON", id="not-json"),
        pytest.param({"text": "hi"}, 1008, "validation_error: message: Field required", id="missing-message"),
        pytest.param(
            {"message": "x" * 41}, 1009, "message_too_long: at most 40 characters", id="too-long"
        ),  # conftest: max 40
        pytest.param("[" * 10_000, 1007, "invalid_json: the frame is not valid JSON", id="nested-10000-deep"),
        pytest.param(
            '{"message": ' + "[" * 10_000 + "]" * 10_000 + "}",
            1007,
            "invalid_json: the frame is not valid JSON",
            id="nested-field-10000-deep",
        ),
        pytest.param(
            {"message": "hi", "last_event_id": 5},
            1008,
            "validation_error: last_event_id: Input should be a valid string",
            id="last-event-id-not-a-string",
        ),
    ],
)
def test_bad_input_closes_with_a_code_and_reason(
    client: TestClient, token: str, request_frame: Any, code: int, reason: str
) -> None:
    with client.websocket_connect(URL, subprotocols=protocols(token)) as ws:
        ws.send_text(request_frame if isinstance(request_frame, str) else json.dumps(request_frame))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (code, reason)


def test_a_binary_frame_closes_with_1003(client: TestClient, token: str) -> None:
    with client.websocket_connect(URL, subprotocols=protocols(token)) as ws:
        ws.send_bytes(b'{"message": "hi"}')
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (
        1003,
        "unsupported_data: send the request as one JSON text frame",
    )


def test_a_websocket_that_sends_no_request_is_closed_after_the_deadline(
    client: TestClient, settings: Settings, token: str
) -> None:
    settings.ws_first_frame_seconds = 0.3
    sent: list[Message] = []
    connected = False

    async def receive() -> Message:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        await anyio.sleep_forever()  # a client that never speaks (and answers every ping)
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    run_websocket(client, app, protocols(token), receive, send, timeout=5)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert (sent[-1]["code"], sent[-1]["reason"]) == (1008, "first_frame_timeout: no request frame within 0.3 s")


class GoneClient:
    """A WebSocket client as uvicorn presents it to the app: it sends the
    request, takes ``frames`` events and then goes away. ``how``: "closes"
    (a close frame: receive() reports the disconnect, and uvicorn then fails
    any send, the close included) or "vanishes" (the connection is lost: the
    next send fails before receive() has noticed anything)."""

    def __init__(self, request: dict[str, Any], frames: int, how: str) -> None:
        self.incoming: list[Message] = [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": json.dumps(request)},
        ]
        self.frames, self.how = frames, how
        self.sent: list[Message] = []
        self.gone = anyio.Event()

    async def receive(self) -> Message:
        if self.incoming:
            return self.incoming.pop(0)
        await self.gone.wait()
        if self.how == "vanishes":
            await anyio.sleep_forever()  # the server has not noticed yet
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(self, message: Message) -> None:
        if self.gone.is_set():
            raise ClientDisconnected  # what uvicorn raises once the client has left
        self.sent.append(message)
        if sum(m["type"] == "websocket.send" for m in self.sent) == self.frames:
            self.gone.set()
        await anyio.sleep(0.01)  # a network write takes a moment


@pytest.mark.parametrize("how", ["closes", "vanishes"])
def test_a_client_leaving_during_the_reply_is_not_an_error(
    client: TestClient, token: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    gone = GoneClient({"message": "/pace 50 12"}, frames=3, how=how)
    with caplog.at_level(logging.INFO):
        # Before: the app raised (WebSocketDisconnect from the send or the
        # close), which uvicorn logs as "Exception in ASGI application".
        run_websocket(client, app, protocols(token), gone.receive, gone.send, timeout=5)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    left = [r for r in caplog.records if r.name == "app.routes.chat_ws"]
    assert [(r.levelno, r.getMessage()) for r in left] == [
        (logging.INFO, "a WebSocket client left before the end of its reply (close code 1000)")
        if how == "closes"
        else (logging.INFO, "a WebSocket client left before the end of its reply (close code 1006)")
    ]


def test_a_client_gone_before_its_refusal_is_not_an_error(client: TestClient, token: str) -> None:
    sent: list[Message] = []
    incoming: list[Message] = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "{nope"}]

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        if message["type"] == "websocket.close":
            raise ClientDisconnected  # the client sent its frame and left
        sent.append(message)

    run_websocket(client, app, protocols(token), receive, send, timeout=5)
    assert [m["type"] for m in sent] == ["websocket.accept"]


def test_without_the_denial_response_extension_a_refusal_is_a_close(client: TestClient) -> None:
    # A server that cannot send an HTTP answer to a handshake (no
    # "websocket.http.response" in the scope's extensions) gets a close before
    # the accept, which it answers with an empty 403.
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    run_websocket(client, app, ["chat.v1"], receive, send, timeout=5)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]


def test_an_unexpected_error_before_the_accept_is_a_json_500(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Uncaught, it would be uvicorn's plain-text 500: Starlette's JSON one skips WebSockets.
    def fail(token: str) -> None:
        raise RuntimeError("a detail the client must not see")

    monkeypatch.setattr(app.state.authenticator, "verify", fail)
    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(WebSocketDenialResponse) as refused,
        client.websocket_connect(URL, headers={"X-Request-ID": "rid-ws"}, subprotocols=protocols("any")),
    ):
        pass

    response = refused.value
    assert (response.status_code, response.headers["content-type"]) == (500, "application/json")
    assert response.json() == {
        "error": {"code": "internal_error", "message": "The server failed to answer. Retry shortly."}
    }
    (record,) = [r for r in caplog.records if r.exc_info]
    assert (record.name, record.getMessage()) == ("app.errors", f"unexpected error answering WS {URL} rid=rid-ws")
