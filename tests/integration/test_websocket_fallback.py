"""The WebSocket fallback through nginx: the same events, incrementally, and a
clear close code for bad input."""

import json

import pytest
from app.twin import reply_tokens
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from streamcheck import clients
from streamcheck.timing import Kind, bursts, classify
from tests.integration.stack import REPLY_TOKENS, TOKEN_DELAY_SECONDS, Stack

PAYLOAD = {"message": "مرحبا over a WebSocket 👋🏽"}


def test_tokens_arrive_one_by_one_over_the_websocket(stack: Stack) -> None:
    m = clients.with_websocket(stack.ws_url(), PAYLOAD, token=stack.token)

    assert classify(m).kind is Kind.STREAMING, classify(m)
    times = m.times("token")
    assert len(bursts(times)) == REPLY_TOKENS
    assert times[-1] - times[0] >= 0.6 * REPLY_TOKENS * TOKEN_DELAY_SECONDS
    assert "".join(json.loads(e.data)["text"] for e in m.events("token")) == "".join(reply_tokens(REPLY_TOKENS))
    assert (m.events()[0].event, m.closing_event) == ("start", "end")


def test_the_same_events_resume_over_the_websocket(stack: Stack) -> None:
    first = clients.with_requests(stack.url(), PAYLOAD, headers=stack.auth)
    resume_after = first.events("token")[9].id
    m = clients.with_websocket(stack.ws_url(), {**PAYLOAD, "last_event_id": resume_after}, token=stack.token)
    assert [json.loads(e.data)["index"] for e in m.events("token")] == list(range(10, REPLY_TOKENS))


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        pytest.param("not json", 1007, "invalid_json: the frame is not valid JSON", id="not-json"),
        pytest.param(
            json.dumps({"message": ""}),
            1008,
            "validation_error: message: String should have at least 1 character",
            id="empty-message",
        ),
        pytest.param(
            json.dumps({"message": "x" * 4001}),
            1009,
            "message_too_long: at most 4000 characters",
            id="message-too-long",
        ),
        pytest.param(
            json.dumps({"message": "x" * 100_000}), 1009, "frame exceeds limit of 65536 bytes", id="frame-over-64-KiB"
        ),
    ],
)
def test_bad_input_closes_with_code_and_reason(stack: Stack, frame: str, code: int, reason: str) -> None:
    with connect(stack.ws_url(), subprotocols=stack.ws_protocols()) as socket:
        socket.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (code, reason)
