import json

import pytest
from app import events


def test_token_event_frame_is_exact() -> None:
    assert events.token("msg_1", 7, "مرحبا 👋🏽").to_sse() == (
        'id: msg_1:7\nevent: token\ndata: {"index":7,"text":"مرحبا 👋🏽"}\n\n'.encode()
    )


def test_start_event_carries_ids_and_retry() -> None:
    assert events.start("conv_a", "msg_b", retry_ms=3000).to_sse() == (
        b'event: start\ndata: {"conversation_id":"conv_a","message_id":"msg_b"}\nretry: 3000\n\n'
    )


def test_end_and_error_events() -> None:
    assert events.end(5).to_sse() == b'event: end\ndata: {"finish_reason":"stop","tokens":5}\n\n'
    assert events.error("source_failed", "no").to_sse() == (
        b'event: error\ndata: {"code":"source_failed","message":"no"}\n\n'
    )


def test_heartbeat_is_a_comment() -> None:
    assert events.HEARTBEAT == b": ping\n\n"


@pytest.mark.parametrize("text", ["", "a", "مرحبا 👋🏽", "\u2028", '"\\'])
def test_the_token_fast_path_matches_the_validated_shape(text: str) -> None:
    validated = events._event("token", events.TokenData(index=3, text=text), event_id="m:3")
    assert events.token("m", 3, text) == validated


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("\n\nevent: end\ndata: {}", id="forged-event"),
        pytest.param("a\rb\r\nc", id="carriage-returns"),
        pytest.param("nul\x00byte", id="nul"),
    ],
)
def test_token_text_cannot_break_the_frame(text: str) -> None:
    frame = events.token("m", 0, text).to_sse().decode()
    lines = frame.split("\n")
    # Exactly one id, one event, one data line and the blank terminator.
    assert lines[:2] == ["id: m:0", "event: token"]
    assert lines[3:] == ["", ""]
    assert "\r" not in frame and "\x00" not in frame
    assert json.loads(lines[2].removeprefix("data: "))["text"] == text


def test_the_websocket_frame_carries_the_same_event() -> None:
    assert events.token("msg_1", 7, "مرحبا").to_json() == (
        '{"event":"token","data":{"index":7,"text":"مرحبا"},"id":"msg_1:7"}'
    )
    assert events.error("server_shutdown", "bye", retry_ms=1000).to_json() == (
        '{"event":"error","data":{"code":"server_shutdown","message":"bye"},"retry":1000}'
    )


def test_the_event_schema_names_each_event_and_its_data() -> None:
    shapes = {shape["properties"]["event"]["const"]: shape for shape in events.sse_event_schema()["oneOf"]}

    assert set(shapes) == {"start", "token", "end", "error"}
    # Only token events are sure to carry an id (a parser carries the last one over).
    assert [name for name, shape in shapes.items() if "id" in shape["required"]] == ["token"]
    token_data = shapes["token"]["properties"]["data"]
    assert token_data["contentMediaType"] == "application/json"
    assert token_data["contentSchema"]["required"] == ["index", "text"]


MESSAGE_ID = "msg_" + "0123456789abcdef" * 2


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        pytest.param(f"{MESSAGE_ID}:0", (MESSAGE_ID, 0), id="first"),
        pytest.param(f"{MESSAGE_ID}:47", (MESSAGE_ID, 47), id="an-index"),
        pytest.param(f"{MESSAGE_ID}:{'9' * 18}", (MESSAGE_ID, 10**18 - 1), id="18-digits"),
        pytest.param(f"{MESSAGE_ID}:{'9' * 19}", None, id="19-digits"),
        pytest.param(f"{MESSAGE_ID}:²", None, id="superscript-two"),
        pytest.param(f"{MESSAGE_ID}:٣", None, id="arabic-indic-three"),
        pytest.param(f"{MESSAGE_ID}:\uff13", None, id="fullwidth-three"),
        pytest.param(f"{MESSAGE_ID}:07", None, id="leading-zero"),
        pytest.param(f"{MESSAGE_ID}:-1", None, id="negative"),
        pytest.param(f"{MESSAGE_ID}:1\n", None, id="trailing-newline"),
        pytest.param(f"{MESSAGE_ID}:", None, id="no-index"),
        pytest.param(f"{MESSAGE_ID.upper()}:1", None, id="upper-case"),
        pytest.param("msg_x:1", None, id="short-message-id"),
        pytest.param("msg_" + "\u0660" * 32 + ":1", None, id="non-ascii-message-id"),
        pytest.param(MESSAGE_ID, None, id="no-colon"),
        pytest.param("", None, id="empty"),
        pytest.param(f"{MESSAGE_ID}:{'1' * 100_000}", None, id="over-long"),
    ],
)
def test_event_ids_are_parsed_strictly(value: str, parsed: tuple[str, int] | None) -> None:
    assert events.parse_event_id(value) == parsed
    if parsed is not None:
        assert events.token_event_id(*parsed) == value  # exactly the ids the API writes
