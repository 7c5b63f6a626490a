"""Resume ids from clients: anything but an id of a token the reply has gets
one explicit ``resume_unavailable`` error event, over both transports, never a
500, a 422, a dropped connection or a stream that claims to resume from a
token that does not exist."""

import json
from typing import Any

import pytest
from app.main import app
from fastapi.testclient import TestClient
from raw_asgi import post
from sse_body import parse
from starlette.websockets import WebSocketDisconnect

URL = "/api/chat/message/stream"
WS_URL = "/api/chat/message/ws"
RESUME_UNAVAILABLE = [
    (
        "error",
        {
            "code": "resume_unavailable",
            "message": "The reply to resume is unknown or has expired. Send the message again.",
        },
    )
]


@pytest.fixture
def message_id(client: TestClient) -> str:
    """The id of a finished reply of 12 tokens (conftest), alice's."""
    events = parse(client.post(URL, json={"message": "hi"}).text)
    assert events[-1] == ("end", {"finish_reason": "stop", "tokens": 12})
    return str(events[0][1]["message_id"])


# Each a template: "{m}" is the id of a finished reply of 12 tokens (0..11).
BAD_IDS = {
    "one-past-the-end": "{m}:12",
    "far-past-the-end": "{m}:999999999",  # past CHAT_MAX_REPLY_TOKENS too
    "more-digits-than-any-index": "{m}:999999999999999999999999",
    "arabic-indic-digit": "{m}:٣",  # int() reads it; no id of ours has it
    "negative": "{m}:-1",
    "plus-sign": "{m}:+1",
    "space": "{m}: 1",
    "leading-zero": "{m}:01",
    "no-index": "{m}:",
    "upper-case-id": "{M}:1",
    "two-indices": "{m}:1:1",
    "short-message-id": "{m_short}:1",
    "message-id-only": "{m}",
    "over-200-characters": "x" * 201,  # was a 422 over HTTP, 1008 over the WebSocket
    "10000-digits": "{m}:" + "1" * 10_000,
}


def bad_id(kind: str, message_id: str) -> str:
    return BAD_IDS[kind].format(m=message_id, M=message_id.upper(), m_short=message_id[:-1])


def ws_converse(client: TestClient, token: str, request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    frames = []
    with client.websocket_connect(WS_URL, subprotocols=["chat.v1", f"bearer.{token}"]) as ws:
        ws.send_text(json.dumps(request))
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                frame = json.loads(ws.receive_text())
                frames.append((frame["event"], frame["data"]))
    assert closed.value.code == 1000
    return frames


@pytest.mark.parametrize("kind", BAD_IDS)
def test_a_bad_id_gets_resume_unavailable_over_http(client: TestClient, message_id: str, kind: str) -> None:
    bad = bad_id(kind, message_id).encode()  # the TestClient sends only ASCII unless given bytes
    response = client.post(URL, json={"message": "hi"}, headers={b"Last-Event-ID": bad})
    assert response.status_code == 200
    assert parse(response.text) == RESUME_UNAVAILABLE


@pytest.mark.parametrize("kind", [*BAD_IDS, "superscript-two"])
def test_a_bad_id_gets_resume_unavailable_over_the_websocket(
    client: TestClient, token: str, message_id: str, kind: str
) -> None:
    bad = f"{message_id}:²" if kind == "superscript-two" else bad_id(kind, message_id)
    assert ws_converse(client, token, {"message": "hi", "last_event_id": bad}) == RESUME_UNAVAILABLE


def test_a_digit_int_refuses_is_not_a_500(client: TestClient, token: str, message_id: str) -> None:
    # "²" (0xB2 in the header's Latin-1) is a digit to str.isdigit() but not
    # to int(). The TestClient re-encodes header values as UTF-8, so the exact
    # bytes a client sends go to the app directly.
    status, body = post(
        client,
        app,
        URL,
        [
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"last-event-id", message_id.encode() + b":\xb2"),
        ],
        b'{"message": "hi"}',
    )
    assert (status, parse(body.decode())) == (200, RESUME_UNAVAILABLE)


def test_the_last_token_id_still_resumes_to_the_end(client: TestClient, token: str, message_id: str) -> None:
    # The boundary of "past the end": the id of the last token is valid and
    # gets the end, by either transport.
    response = client.post(URL, json={"message": "hi"}, headers={"Last-Event-ID": f"{message_id}:11"})
    events = parse(response.text)
    assert [name for name, _ in events] == ["start", "end"]
    assert (events[0][1]["message_id"], events[0][1]["resumed_from"]) == (message_id, 12)
    frames = ws_converse(client, token, {"message": "hi", "last_event_id": f"{message_id}:11"})
    assert [name for name, _ in frames] == ["start", "end"]
