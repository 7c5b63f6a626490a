"""Hostile input through nginx (issue 11): every odd resume id, frame or
silence gets the documented answer, never a 500, a dropped connection or a
socket held open for nothing."""

import json
import time
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from streamcheck import clients
from tests.integration.stack import WS_FIRST_FRAME_SECONDS, Stack

PAYLOAD = {"message": "hi"}
# compose.test.yaml turns the twin's hooks on: a reply of 3 tokens at once,
# made afresh for each test (finished replies stay resumable for only 5 s there).
SHORT_REPLY = {"message": "/pace 0 3"}
PAST_THE_END = ":3"
RESUME_UNAVAILABLE = {
    "code": "resume_unavailable",
    "message": "The reply to resume is unknown or has expired. Send the message again.",
}


@pytest.fixture
def message_id(stack: Stack) -> str:
    """The id of a finished reply of 3 tokens (0..2), the stack token's."""
    m = clients.with_requests(stack.url(), SHORT_REPLY, headers=stack.auth)
    assert (len(m.events("token")), m.closing_event) == (3, "end")
    return str(json.loads(m.events("start")[0].data)["message_id"])


def sse_events(response: requests.Response) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in response.text.strip("\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":"))
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def closed_with(socket: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            socket.recv(timeout=10)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


@pytest.mark.parametrize(
    "suffix",
    [
        pytest.param(":\u00b2", id="superscript-two-as-latin-1-byte"),  # str.isdigit() but not int(): was a 500
        pytest.param(PAST_THE_END, id="one-past-the-end"),  # was a start claiming resumed_from 4
        pytest.param(":99999999999", id="far-past-the-end"),
        pytest.param(":1" + "0" * 300, id="over-200-characters"),  # was a 422
    ],
)
def test_a_bad_last_event_id_gets_resume_unavailable(stack: Stack, message_id: str, suffix: str) -> None:
    # requests sends header values as Latin-1: "²" travels as the byte 0xB2.
    headers = {**stack.auth, "Last-Event-ID": message_id + suffix}
    response = requests.post(stack.url(), json=PAYLOAD, headers=headers, timeout=10)
    assert response.status_code == 200
    assert sse_events(response) == [("error", RESUME_UNAVAILABLE)]


@pytest.mark.parametrize(
    "suffix",
    [
        pytest.param(":\u00b2", id="superscript-two"),
        pytest.param(":\u0663", id="arabic-indic-three"),
        pytest.param(PAST_THE_END, id="one-past-the-end"),
        pytest.param(":1" + "0" * 300, id="over-200-characters"),
    ],
)
def test_a_bad_last_event_id_gets_resume_unavailable_over_the_websocket(
    stack: Stack, message_id: str, suffix: str
) -> None:
    with connect(stack.ws_url(), subprotocols=stack.ws_protocols()) as socket:
        socket.send(json.dumps({**PAYLOAD, "last_event_id": message_id + suffix}))
        frame = json.loads(socket.recv(timeout=10))
        assert (frame["event"], frame["data"]) == ("error", RESUME_UNAVAILABLE)
        assert closed_with(socket) == (1000, "")


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        pytest.param(
            b'{"message": "hi"}', 1003, "unsupported_data: send the request as one JSON text frame", id="binary"
        ),
        pytest.param("[" * 10_000, 1007, "invalid_json: the frame is not valid JSON", id="nested-10000-deep"),
    ],
)
def test_an_unreadable_first_frame_closes_with_a_code_and_reason(
    stack: Stack, frame: str | bytes, code: int, reason: str
) -> None:
    with connect(stack.ws_url(), subprotocols=stack.ws_protocols()) as socket:
        socket.send(frame)
        assert closed_with(socket) == (code, reason)


def test_a_deeply_nested_body_is_invalid_json(stack: Stack) -> None:
    response = requests.post(
        stack.url(), data=b"[" * 10_000, headers={**stack.auth, "Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "invalid_json", "message": "The request body is not valid JSON."}}


def test_a_websocket_that_sends_no_request_is_closed_though_it_answers_pings(stack: Stack) -> None:
    started = time.monotonic()
    pongs = 0
    with (
        connect(stack.ws_url(), subprotocols=stack.ws_protocols()) as socket,
        pytest.raises(ConnectionClosed) as closed,
    ):
        while time.monotonic() - started < WS_FIRST_FRAME_SECONDS + 10:
            # Alive, and says so. A short wait: a ping sent just before the
            # server's close gets no pong, and the close is seen only after it.
            pongs += socket.ping().wait(timeout=1)
            try:
                socket.recv(timeout=0.5)
            except TimeoutError:
                continue
            raise AssertionError("the server sent a frame before any request")
    waited = time.monotonic() - started
    assert closed.value.rcvd is not None, "closed without a close frame"
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
        1008,
        f"first_frame_timeout: no request frame within {WS_FIRST_FRAME_SECONDS:g} s",
    )
    assert WS_FIRST_FRAME_SECONDS - 0.5 < waited < WS_FIRST_FRAME_SECONDS + 5, waited
    assert pongs >= 2


def api_logs(stack: Stack) -> str:
    stdout, stderr = stack.compose.get_logs("api")
    return stdout + stderr


def test_clients_leaving_during_websocket_replies_log_no_error(stack: Stack) -> None:
    # A normal close mid-reply, ten times: an INFO line each, no traceback.
    before = api_logs(stack)
    for _ in range(10):
        with connect(stack.ws_url(), subprotocols=stack.ws_protocols()) as socket:
            socket.send(json.dumps({"message": "/pace 50 40"}))
            for _ in range(3):
                socket.recv(timeout=10)
    time.sleep(2)  # the API notices, and logs
    after = api_logs(stack)
    errors = [marker for marker in ("Exception in ASGI application", "Traceback", " ERROR ") if marker in after]
    new_errors = [marker for marker in errors if after.count(marker) > before.count(marker)]
    assert new_errors == [], after[-4000:]
    left = "a WebSocket client left before the end of its reply"
    assert after.count(left) - before.count(left) >= 10
