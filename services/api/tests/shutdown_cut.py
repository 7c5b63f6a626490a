"""A stream cut by the API's shutdown, driven as app/shutdown.py's tick does
it on SIGTERM, for the tests of what a shutdown leaves behind (the metrics it
counts: test_metrics.py; the span it ends: test_tracing.py)."""

import time

from app.memory_store import MemoryReplyStore
from app.open_streams import OpenStreams
from app.streaming import StreamRequest, reply_events
from app.token_source import TokenSource
from store_contract import limits


async def cut_by_shutdown(source: TokenSource) -> list[str]:
    """Stream a reply from ``source`` over SSE; at its first token, mark the
    streams as shutting down (the tick's work on SIGTERM), then close the
    store, which cancels the reply still generating. Returns what the client
    got: each event's error code, or its name."""
    # A resume grace: the reply outlives its stream, so the cancel that ends
    # it is the store's close, not the abandon timer's.
    replies = MemoryReplyStore(limits(resume_grace=60), conversation_ttl=60)
    reply = await replies.start(source, "hi", subject="s", conversation_id="c", message_id="m")
    streams = OpenStreams(heartbeat=0, send_timeout=0, shutdown_send=5)
    stream = streams.stream(sse=True)
    request = StreamRequest(transport="sse", arrived_at=time.perf_counter())
    events = reply_events(replies, reply, request, stream=stream, from_index=0, retry_ms=0, shutdown_retry_ms=0)
    sent: list[str] = []
    async for event in events:
        if event is not None:
            sent.append(event.data.get("code", event.name))
            if event.name == "token":
                streams.shutting_down = True
                stream.set()
    await replies.close(0)
    return sent
