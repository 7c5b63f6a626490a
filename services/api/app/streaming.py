"""From a token source to a stream of SSE events.

Why sse-starlette and not ``fastapi.sse`` (FastAPI >= 0.135): both frame
events correctly, but only sse-starlette has a per-send timeout (a frozen
reader is dropped instead of pinning memory), a configurable heartbeat, and a
cooperative shutdown hook that lets a stream send a last event on SIGTERM.
Those are the failure modes this project exists to handle.

Deliberate divergences from sse-starlette's defaults (do not "fix" them):

1. ``Connection: keep-alive`` is removed. sse-starlette always sets it, but it
   is a hop-by-hop header: HTTP/2 forbids it (RFC 9113, section 8.2.2) and
   strict clients reset the stream. The server manages the connection itself.
2. ``Cache-Control: no-cache, no-transform`` replaces ``no-store``: the seed
   guidance asks for ``no-cache``, and ``no-transform`` tells intermediaries
   not to compress or rewrite the body (compression buffers the stream).
"""

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent

from app import events
from app.token_source import TokenSource

logger = logging.getLogger(__name__)

STREAM_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    # Read by nginx: do not buffer this response, whatever proxy_buffering says.
    "X-Accel-Buffering": "no",
}


class EventStreamResponse(EventSourceResponse):
    def __init__(self, content: AsyncIterator[ServerSentEvent], **kwargs: Any) -> None:
        super().__init__(content, headers=STREAM_HEADERS, sep="\n", **kwargs)
        del self.headers["connection"]


async def reply_events(
    source: TokenSource, message: str, *, conversation_id: str, message_id: str, retry_ms: int
) -> AsyncGenerator[ServerSentEvent, None]:
    """start, token..., then end, or error when the source fails.

    ``aclosing`` closes the source as soon as this generator is closed (the
    client went away), so an upstream model call stops at once rather than
    when the garbage collector gets to it.
    """
    yield events.start(conversation_id, message_id, retry_ms=retry_ms)
    count = 0
    try:
        async with aclosing(source.stream(message)) as tokens:
            async for text in tokens:
                yield events.token(message_id, count, text)
                count += 1
    except Exception:
        # Any failure, expected or a bug: the client is told the reply is
        # incomplete instead of seeing a clean end or a hung connection.
        logger.exception("token source failed after %d tokens (message %s)", count, message_id)
        yield events.error("source_failed", "The reply could not be completed. Send the message again.")
        return
    yield events.end(count)
