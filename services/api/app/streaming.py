"""From a reply to the events of one connection.

The connection follows a reply generated elsewhere (:mod:`app.replies`): it
gets what the reply already has from the requested index, then each new
token as it comes, then ``end`` or ``error``. On server shutdown an SSE
stream ends with an ``error`` event carrying ``retry:``, so clients
reconnect with Last-Event-ID instead of waiting on a dead connection. The
transports write the events: :mod:`app.sse_response` and
:mod:`app.routes.chat_ws`.
"""

import asyncio
import logging
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter

from starlette.types import Scope

from app import access_log, events, metrics, tracing
from app.events import ChatEvent
from app.open_streams import OpenStream
from app.replies import Reply
from app.reply_store import ReplyStore

logger = logging.getLogger(__name__)

RESUME_UNAVAILABLE = "The reply to resume is unknown or has expired. Send the message again."
TOKEN_EXPIRED = "The token expired during the reply. Reconnect with a new token and Last-Event-ID."
SHUTTING_DOWN = "The server is restarting. Reconnect with Last-Event-ID to resume."

# What reply_events yields when it has nothing to send but a heartbeat is due.
HEARTBEAT_DUE = None


@contextmanager
def _wake_after(seconds: float | None, stream: OpenStream) -> Iterator[None]:
    timer = asyncio.get_running_loop().call_later(seconds, stream.set) if seconds is not None else None
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
    stream: OpenStream,
    from_index: int,
    retry_ms: int,
    shutdown_retry_ms: int,
    expires_in: float | None = None,
) -> AsyncGenerator[ChatEvent | None, None]:
    """start, token... from ``from_index``, then end or error; ``None``
    (HEARTBEAT_DUE) when a heartbeat is due and nothing else is to send.

    ``stream`` wakes the generator (a token, the reply's end, a heartbeat,
    shutdown, the client's departure: the generator then returns).

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
        with store.attach(reply), reply.watch(stream), _wake_after(expires_in, stream):
            index = from_index
            while True:
                stream.clear()
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
                if stream.disconnected:
                    return  # outcome "disconnected"
                if stream.shutting_down:
                    ended.outcome = "shutdown"
                    yield events.error("server_shutdown", SHUTTING_DOWN, retry_ms=shutdown_retry_ms)
                    return
                if stream.heartbeat_due:
                    yield HEARTBEAT_DUE
                    continue
                await stream.wait()


async def resume_unavailable(request: StreamRequest) -> AsyncGenerator[ChatEvent | None, None]:
    """An explicit answer for an unknown or expired Last-Event-ID: never a silent restart."""
    with _observed(request) as (ended, _):
        ended.outcome = "resume_unavailable"
        yield events.error("resume_unavailable", RESUME_UNAVAILABLE)


def events_for(
    store: ReplyStore,
    reply: Reply | None,
    request: StreamRequest,
    *,
    stream: OpenStream,
    from_index: int,
    retry_ms: int,
    shutdown_retry_ms: int,
    expires_in: float | None = None,
) -> AsyncGenerator[ChatEvent | None, None]:
    """The events for one connection: the reply from ``from_index``, or
    ``resume_unavailable`` when there is no reply (see app.conversation)."""
    if reply is None:
        return resume_unavailable(request)
    return reply_events(
        store,
        reply,
        request,
        stream=stream,
        from_index=from_index,
        retry_ms=retry_ms,
        shutdown_retry_ms=shutdown_retry_ms,
        expires_in=expires_in,
    )
