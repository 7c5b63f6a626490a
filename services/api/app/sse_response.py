"""The Server-Sent Events response: one stream's events, written as they come.

Why not sse-starlette's ``EventSourceResponse`` (this project's response
until its memory per stream was measured): it runs every stream as a task
group of four tasks (the writer, a heartbeat loop, a shutdown listener and a
disconnect listener) and wraps each send in a cancel scope for its timeout.
Those tasks and their timers were most of the API's memory per held stream
(README, "Performance"). This response keeps every behaviour the tests
prove, at the cost of one small task beside the request's own:

- heartbeats, the send timeout and the last event on shutdown come from the
  process's one timer (:mod:`app.open_streams`), which wakes or cancels the
  stream's task;
- the disconnect is still watched, by a task that waits on ``receive()``:
  uvicorn does not raise when the app sends to a closed connection, so a
  stream would otherwise write into the void until its reply ended. (The
  timer could read uvicorn's own flag instead and save that task, 1.2 KiB a
  stream; but it would notice a departure up to a tick late, and a stream
  must be freed as soon as its client leaves.)

Deliberate choices (do not "fix" them):

1. No ``Connection: keep-alive``. It is a hop-by-hop header: HTTP/2 forbids
   it (RFC 9113, section 8.2.2) and strict clients reset the stream.
2. ``Cache-Control: no-cache, no-transform``: the seed guidance asks for
   ``no-cache``, and ``no-transform`` tells intermediaries not to compress
   or rewrite the body (compression buffers the stream).
3. ``X-Accel-Buffering: no``: nginx does not buffer this response, whatever
   ``proxy_buffering`` says where it is deployed.
"""

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from app.events import HEARTBEAT, ChatEvent
from app.open_streams import OpenStream

logger = logging.getLogger(__name__)

STREAM_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}


class EventStreamResponse(Response):
    def __init__(
        self,
        events: AsyncGenerator[ChatEvent | None, None],
        stream: OpenStream,
        *,
        split_characters: bool = False,
    ) -> None:
        self.status_code = 200
        self.background = None
        # On the instance, not the class: FastAPI documents a route's other
        # responses (the JSON errors) with its response class's media type.
        self.media_type = "text/event-stream"
        self.init_headers(STREAM_HEADERS)
        self._events = events
        self._stream = stream
        self._split_characters = split_characters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._split_characters:
            send = _split_inside_characters(send)
        stream = self._stream
        stream.task = asyncio.current_task()
        watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, stream))
        try:
            with stream:
                await self._write(send)
        except asyncio.CancelledError:
            if stream.cancelled_for is None:
                raise  # not ours: the server's
            # Cancelled by the process's timer (app.open_streams): the
            # connection is dropped (uvicorn closes it when this returns),
            # and the client can resume with Last-Event-ID.
            task = asyncio.current_task()
            if task is not None and task.uncancel() > 0:
                raise  # someone else cancelled it too: that cancellation stands
            if stream.cancelled_for == "send_timeout":
                # A client that stopped reading: dropped so it cannot pin memory.
                request_id = scope.get("state", {}).get("request_id")
                logger.warning(
                    "dropped a client that took no data for %s s (request %s)",
                    f"{stream.send_timeout:g}",
                    request_id,
                )
        finally:
            watcher.cancel()

    async def _write(self, send: Send) -> None:
        stream = self._stream
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async with aclosing(self._events) as events:
            async for event in events:
                if stream.disconnected:
                    break
                stream.sending()
                await send(
                    {
                        "type": "http.response.body",
                        "body": HEARTBEAT if event is None else event.to_sse(),
                        "more_body": True,
                    }
                )
                stream.sent()
        if not stream.disconnected:
            stream.sending()  # the last send can wait for a full buffer too
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch_disconnect(receive: Receive, stream: OpenStream) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # the request body was read already; nothing else can come
    stream.disconnected = True
    stream.set()


def _split_inside_characters(send: Send) -> Send:
    """Test hook: write each event in pieces cut inside multi-byte characters."""

    async def split_send(message: Message) -> None:
        body: bytes = message.get("body", b"") if message["type"] == "http.response.body" else b""
        cuts = [i for i in range(1, len(body)) if body[i - 1] >= 0xC0]  # just after a lead byte
        start = 0
        for cut in cuts:
            await send({"type": "http.response.body", "body": body[start:cut], "more_body": True})
            await asyncio.sleep(0.005)  # separate network writes
            start = cut
        await send({**message, "body": body[start:]} if cuts else message)

    return split_send
