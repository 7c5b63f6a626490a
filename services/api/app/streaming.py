"""From a reply to a stream of SSE events, for one connection.

The connection subscribes to a reply generated elsewhere (:mod:`app.replies`):
it sends what the reply already has from the requested index, then each new
token as it comes, then ``end`` or ``error``. On server shutdown it ends with
an ``error`` event carrying ``retry:``, so clients reconnect with
Last-Event-ID instead of waiting on a dead connection.

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

import asyncio
import logging
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from app import access_log, events, metrics, tracing
from app.events import ChatEvent
from app.replies import Reply
from app.reply_store import ReplyStore

logger = logging.getLogger(__name__)

STREAM_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    # Read by nginx: do not buffer this response, whatever proxy_buffering says.
    "X-Accel-Buffering": "no",
}

RESUME_UNAVAILABLE = "The reply to resume is unknown or has expired. Send the message again."
TOKEN_EXPIRED = "The token expired during the reply. Reconnect with a new token and Last-Event-ID."
SHUTTING_DOWN = "The server is restarting. Reconnect with Last-Event-ID to resume."


async def _as_sse(chat_events: AsyncGenerator[ChatEvent, None]) -> AsyncGenerator[ServerSentEvent, None]:
    async with aclosing(chat_events):
        async for event in chat_events:
            yield event.to_sse()


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


class EventStreamResponse(EventSourceResponse):
    def __init__(
        self, content: AsyncGenerator[ChatEvent, None], *, split_characters: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(_as_sse(content), headers=STREAM_HEADERS, sep="\n", **kwargs)
        del self.headers["connection"]
        self._split_characters = split_characters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._split_characters:
            send = _split_inside_characters(send)
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            # A client that stopped reading: its connection is dropped so it
            # cannot pin memory. It can reconnect with Last-Event-ID.
            request_id = scope.get("state", {}).get("request_id")
            logger.warning("dropped a client that took no data for %s s (request %s)", self.send_timeout, request_id)


@contextmanager
def _wake_on(event: anyio.Event, wake: asyncio.Event) -> Iterator[None]:
    async def relay() -> None:
        await event.wait()
        wake.set()

    task = asyncio.get_running_loop().create_task(relay())
    try:
        yield
    finally:
        task.cancel()


@contextmanager
def _wake_after(seconds: float | None, wake: asyncio.Event) -> Iterator[None]:
    timer = asyncio.get_running_loop().call_later(seconds, wake.set) if seconds is not None else None
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


@dataclass(frozen=True)
class StreamRequest:
    """Who asked for a stream, and when: what its metrics and its span need."""

    transport: str  # "sse" or "websocket" (app.metrics.TRANSPORTS)
    arrived_at: float  # time.perf_counter() when the request arrived
    request_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # for traceparent
    # The stream's span when it was started before the reply (a new reply's
    # generation is its child: app.conversation.open_stream); else started here.
    span: tracing.StreamSpan | None = None


def arrival(scope: Scope) -> float:
    """When the request of ``scope`` arrived (set by the outermost middleware)."""
    arrived_at: float | None = scope.get("state", {}).get(access_log.ARRIVED_AT)
    return arrived_at if arrived_at is not None else perf_counter()


def start_span(request: StreamRequest, attributes: Mapping[str, str | int] | None = None) -> tracing.StreamSpan:
    """The span of the stream ``request`` asked for (tracing.NO_SPAN when tracing is off)."""
    return tracing.start_stream(
        transport=request.transport,
        arrived_at=request.arrived_at,
        request_id=request.request_id,
        headers=request.headers,
        attributes=attributes,
    )


@dataclass
class _Ended:
    outcome: str = "disconnected"  # unless the stream records another
    code: str = ""  # the error event's code, when outcome is "error"
    tokens: int = 0  # token events sent


@contextmanager
def _observed(
    request: StreamRequest, span_attributes: Mapping[str, str | int] | None = None
) -> Iterator[tuple[_Ended, tracing.StreamSpan]]:
    """Count the open stream and trace it; the caller records how it ended."""
    ended = _Ended()
    observed = metrics.BY_TRANSPORT[request.transport]
    span = request.span
    if span is None:
        span = start_span(request, span_attributes)
    elif span_attributes:
        span.annotate(span_attributes)
    observed.active.inc()
    try:
        yield ended, span
    finally:
        observed.active.dec()
        observed.duration.observe(perf_counter() - request.arrived_at)
        observed.ended_as(ended.outcome, ended.code).inc()
        span.end(ended.outcome, ended.code, ended.tokens)
        access_log.note(outcome=ended.outcome, tokens=ended.tokens)


async def reply_events(
    store: ReplyStore,
    reply: Reply,
    request: StreamRequest,
    *,
    from_index: int,
    shutdown: anyio.Event,
    retry_ms: int,
    shutdown_retry_ms: int,
    expires_in: float | None = None,
) -> AsyncGenerator[ChatEvent, None]:
    """start, token... from ``from_index``, then end or error.

    ``expires_in``: seconds until the client's token expires; the stream ends
    then with ``token_expired``, whatever the reply is doing.

    Each token event is timed when the client's transport has taken it (the
    generator resumes after the send): the first one of a new reply from the
    request's arrival (time to first token), every later one from the one
    before (inter-token latency). A resumed stream's first token has no
    "before" here and is not timed.
    """
    identity = {"chat.conversation_id": reply.conversation_id, "chat.message_id": reply.message_id}
    with _observed(request, identity) as (ended, span):
        resumed_from = from_index if from_index else None
        if resumed_from is not None:
            span.event("resume", {"chat.resumed_from": resumed_from})
        yield events.start(reply.conversation_id, reply.message_id, retry_ms=retry_ms, resumed_from=resumed_from)
        observed = metrics.BY_TRANSPORT[request.transport]
        inter_token = observed.inter_token_latency
        last_sent: float | None = None
        deadline = asyncio.get_running_loop().time() + expires_in if expires_in is not None else None
        with store.attach(reply), reply.watch() as wake, _wake_on(shutdown, wake), _wake_after(expires_in, wake):
            index = from_index
            while True:
                wake.clear()
                while index < len(reply.tokens):
                    yield events.token(reply.message_id, index, reply.tokens[index])
                    sent = perf_counter()
                    if last_sent is not None:
                        inter_token.observe(sent - last_sent)
                    elif resumed_from is None:
                        observed.time_to_first_token.observe(sent - request.arrived_at)
                        span.event("first_token")
                    last_sent = sent
                    index += 1
                    ended.tokens += 1
                if reply.done:
                    if index > len(reply.tokens):
                        # The client claimed a token this reply never had
                        # (app.conversation._past_the_end): no fake `end`.
                        ended.outcome = "resume_unavailable"
                        yield events.error("resume_unavailable", RESUME_UNAVAILABLE)
                    elif reply.failure is None:
                        ended.outcome = "end" if reply.finish_reason == "stop" else reply.finish_reason
                        yield events.end(len(reply.tokens), reply.finish_reason, reply.usage)
                    else:
                        ended.outcome, ended.code = "error", reply.failure.code
                        access_log.note(error=reply.failure.code)
                        yield events.error(reply.failure.code, reply.failure.message)
                    return
                if deadline is not None and asyncio.get_running_loop().time() >= deadline:
                    ended.outcome = "token_expired"
                    yield events.error("token_expired", TOKEN_EXPIRED)
                    return
                if shutdown.is_set():
                    ended.outcome = "shutdown"
                    yield events.error("server_shutdown", SHUTTING_DOWN, retry_ms=shutdown_retry_ms)
                    return
                await wake.wait()


async def resume_unavailable(request: StreamRequest) -> AsyncGenerator[ChatEvent, None]:
    """An explicit answer for an unknown or expired Last-Event-ID: never a silent restart."""
    with _observed(request) as (ended, _):
        ended.outcome = "resume_unavailable"
        yield events.error("resume_unavailable", RESUME_UNAVAILABLE)


def events_for(
    store: ReplyStore,
    reply: Reply | None,
    request: StreamRequest,
    *,
    from_index: int,
    shutdown: anyio.Event,
    retry_ms: int,
    shutdown_retry_ms: int,
    expires_in: float | None = None,
) -> AsyncGenerator[ChatEvent, None]:
    """The events for one connection: the reply from ``from_index``, or
    ``resume_unavailable`` when there is no reply (see app.conversation)."""
    if reply is None:
        return resume_unavailable(request)
    return reply_events(
        store,
        reply,
        request,
        from_index=from_index,
        shutdown=shutdown,
        retry_ms=retry_ms,
        shutdown_retry_ms=shutdown_retry_ms,
        expires_in=expires_in,
    )
