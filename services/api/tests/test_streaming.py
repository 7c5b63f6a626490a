import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator

from app.streaming import STREAM_HEADERS, EventStreamResponse, reply_events


class Source:
    def __init__(self, tokens: list[str], fail_after: int | None = None) -> None:
        self.tokens = tokens
        self.fail_after = fail_after
        self.closed = False

    async def stream(self, message: str) -> AsyncGenerator[str, None]:
        try:
            for index, token in enumerate(self.tokens):
                if index == self.fail_after:
                    raise RuntimeError("model backend went away")
                yield token
        finally:
            self.closed = True


async def frames(source: Source) -> list[tuple[str | None, dict[str, object]]]:
    stream = reply_events(source, "hi", conversation_id="c", message_id="m", retry_ms=1000)
    return [(e.event, json.loads(str(e.data))) async for e in stream]


def test_a_complete_reply_is_start_tokens_end() -> None:
    result = asyncio.run(frames(Source(["a", "b"])))
    assert result == [
        ("start", {"conversation_id": "c", "message_id": "m"}),
        ("token", {"index": 0, "text": "a"}),
        ("token", {"index": 1, "text": "b"}),
        ("end", {"finish_reason": "stop", "tokens": 2}),
    ]


def test_a_failing_source_ends_with_an_error_event_and_no_end() -> None:
    result = asyncio.run(frames(Source(["a", "b", "c"], fail_after=1)))
    assert [name for name, _ in result] == ["start", "token", "error"]
    assert result[-1][1] == {
        "code": "source_failed",
        "message": "The reply could not be completed. Send the message again.",
    }


def test_closing_the_stream_closes_the_source_at_once() -> None:
    source = Source(["a", "b", "c"])

    async def read_two_then_leave() -> None:
        stream = reply_events(source, "hi", conversation_id="c", message_id="m", retry_ms=1000)
        await anext(stream)
        await anext(stream)
        await stream.aclose()  # what the server does when the client goes away

    asyncio.run(read_two_then_leave())
    assert source.closed


async def _empty() -> AsyncIterator[object]:
    return
    yield


def test_response_headers_have_no_hop_by_hop_connection() -> None:
    response = EventStreamResponse(_empty())  # type: ignore[arg-type]
    assert "connection" not in response.headers
    for name, value in STREAM_HEADERS.items():
        assert response.headers[name] == value
