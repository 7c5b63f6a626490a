import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from app.memory_store import MemoryReplyStore
from app.open_streams import OpenStream, OpenStreams
from app.sse_response import STREAM_HEADERS, EventStreamResponse
from app.streaming import StreamRequest, reply_events, resume_unavailable
from scripted_sources import ScriptedSource
from store_contract import limits

Frame = tuple[str | None, dict[str, object], int | None]


def arrived() -> StreamRequest:
    """An SSE request that arrived just now."""
    return StreamRequest(transport="sse", arrived_at=time.perf_counter())


def open_stream(*, send_timeout: float = 0, heartbeat: float = 0) -> OpenStream:
    return OpenStreams(heartbeat=heartbeat, send_timeout=send_timeout, shutdown_send=5).stream(sse=True)


def store(grace: float = 0) -> MemoryReplyStore:
    return MemoryReplyStore(limits(resume_grace=grace, max_reply_bytes=10_000), conversation_ttl=3600)


async def collect(
    source: ScriptedSource, *, from_index: int = 0, shutdown_after: int | None = None, grace: float = 0
) -> list[Frame]:
    replies = store(grace)
    reply = await replies.start(source, "hi", subject="s", conversation_id="c", message_id="m")
    frames: list[Frame] = []
    stream = open_stream()
    events = reply_events(
        replies, reply, arrived(), stream=stream, from_index=from_index, retry_ms=3000, shutdown_retry_ms=500
    )
    async for event in events:
        assert event is not None  # no heartbeats here
        frames.append((event.name, event.data, event.retry))
        if shutdown_after is not None and len(frames) == shutdown_after:
            # What the process's tick does on SIGTERM (test_open_streams.py).
            stream._streams.shutting_down = True
            stream.set()
    await replies.close(0)
    return frames


async def until_closed(source: ScriptedSource, timeout: float = 5.0) -> None:
    """Wait for the source to be closed (a few loop turns), with a generous
    bound instead of a fixed sleep of a few milliseconds."""
    async with asyncio.timeout(timeout):
        while not source.closed:
            await asyncio.sleep(0.005)


def test_a_complete_reply_is_start_tokens_end() -> None:
    frames = asyncio.run(collect(ScriptedSource(["a", "b"])))
    assert frames == [
        ("start", {"conversation_id": "c", "message_id": "m"}, 3000),
        ("token", {"index": 0, "text": "a"}, None),
        ("token", {"index": 1, "text": "b"}, None),
        ("end", {"finish_reason": "stop", "tokens": 2}, None),
    ]


def test_a_resumed_stream_starts_after_the_last_event_seen() -> None:
    frames = asyncio.run(collect(ScriptedSource(["a", "b", "c", "d"]), from_index=2))
    assert frames[0] == ("start", {"conversation_id": "c", "message_id": "m", "resumed_from": 2}, 3000)
    assert [data["index"] for name, data, _ in frames if name == "token"] == [2, 3]


def test_a_resume_past_the_end_of_a_reply_ends_with_resume_unavailable_not_end() -> None:
    # A reply still generating elsewhere may be resumed from past this
    # process's view of it; if it ends short of that index, no fake `end`.
    frames = asyncio.run(collect(ScriptedSource(["a", "b"]), from_index=5))
    assert [(name, data.get("code")) for name, data, _ in frames] == [("start", None), ("error", "resume_unavailable")]


def test_a_failing_source_ends_with_an_error_event_and_no_end() -> None:
    frames = asyncio.run(collect(ScriptedSource(["a", "b", "c"], fail_after=1)))
    assert [name for name, _, _ in frames] == ["start", "token", "error"]
    assert frames[-1][1] == {
        "code": "source_failed",
        "message": "The reply could not be completed. Send the message again.",
    }


def test_shutdown_ends_the_stream_with_a_retry_event() -> None:
    # Tokens 100 ms apart: "promptly" means well before the next few of them,
    # a margin no loaded machine eats (at 10 ms apart it was 60 ms).
    frames = asyncio.run(collect(ScriptedSource(["a"] * 50, delay=0.1), shutdown_after=3))
    name, data, retry = frames[-1]
    assert (name, data["code"], retry) == ("error", "server_shutdown", 500)
    assert len(frames) < 10


def test_a_client_leaving_closes_the_source_when_there_is_no_grace() -> None:
    source = ScriptedSource(["a"] * 50, delay=0.01)

    async def leave_after_two() -> None:
        replies = store(grace=0)
        reply = await replies.start(source, "hi", subject="s", conversation_id="c", message_id="m")
        stream = reply_events(
            replies, reply, arrived(), stream=open_stream(), from_index=0, retry_ms=0, shutdown_retry_ms=0
        )
        await anext(stream)
        await anext(stream)
        await stream.aclose()  # what the response does when the client goes away
        await until_closed(source)

    asyncio.run(leave_after_two())
    assert source.closed


def test_resume_unavailable_is_an_explicit_error_event() -> None:
    async def run() -> list[Frame]:
        return [(e.name, e.data, e.retry) async for e in resume_unavailable(arrived()) if e is not None]

    assert asyncio.run(run()) == [
        (
            "error",
            {
                "code": "resume_unavailable",
                "message": "The reply to resume is unknown or has expired. Send the message again.",
            },
            None,
        )
    ]


async def _empty() -> AsyncIterator[object]:
    return
    yield


def test_response_headers_have_no_hop_by_hop_connection() -> None:
    response = EventStreamResponse(_empty(), open_stream())  # type: ignore[arg-type]
    assert "connection" not in response.headers
    assert "content-length" not in response.headers  # the stream has no length: chunked
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    for name, value in STREAM_HEADERS.items():
        assert response.headers[name] == value


def test_a_reader_that_takes_nothing_is_dropped_after_the_send_timeout(caplog: pytest.LogCaptureFixture) -> None:
    source = ScriptedSource(["a"] * 1000)

    async def run() -> float:
        replies = store(grace=0)
        reply = await replies.start(source, "hi", subject="s", conversation_id="c", message_id="m")
        stream = open_stream(send_timeout=0.2)
        events = reply_events(replies, reply, arrived(), stream=stream, from_index=0, retry_ms=0, shutdown_retry_ms=0)
        response = EventStreamResponse(events, stream)
        never = asyncio.Event()

        async def receive() -> dict[str, object]:
            await never.wait()  # the client never sends a disconnect
            return {}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                await never.wait()  # a client that stopped reading

        started = asyncio.get_running_loop().time()
        await response({"type": "http", "method": "POST", "state": {"request_id": "r1"}}, receive, send)  # type: ignore[arg-type]
        elapsed = asyncio.get_running_loop().time() - started
        await until_closed(source)
        return elapsed

    with caplog.at_level(logging.WARNING, logger="app.sse_response"):
        elapsed = asyncio.run(run())
    assert elapsed < 3.0  # dropped after about 0.2 s, not never
    assert source.closed
    assert "dropped a client that took no data for 0.2 s (request r1)" in caplog.text
