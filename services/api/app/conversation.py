"""Open a reply stream: start a reply, or find the one a Last-Event-ID resumes.

The one stream-opening path of both transports (SSE and WebSocket). Every
check runs here, before the first event; a refused request raises
:class:`Refused`, which each transport maps to its own answer (an HTTP
status with the JSON error shape, or a WebSocket close code and reason).
"""

import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace

from app import metrics, tracing
from app.auth import Principal
from app.config import Settings
from app.events import ChatEvent, parse_event_id
from app.open_streams import OpenStream
from app.replies import NotOwner, Reply, StoreFull, StoreUnavailable
from app.reply_store import ReplyStore
from app.streaming import StreamRequest, events_for, start_span
from app.token_source import TokenSource


@dataclass
class Refused(Exception):
    status: int
    code: str
    message: str
    close_code: int  # the WebSocket's answer


NOT_FOUND = Refused(404, "conversation_not_found", "No such conversation.", 1008)
UNAVAILABLE = Refused(503, "store_unavailable", "The reply store is unavailable. Retry shortly.", 1013)
_FULL = {
    "too_many_streams": Refused(503, "too_many_streams", "Too many replies are being generated. Retry shortly.", 1013),
    "store_full": Refused(503, "store_full", "The reply store is full. Retry shortly.", 1013),
}


def too_long(limit: int) -> Refused:
    return Refused(422, "message_too_long", f"at most {limit} characters", 1009)


async def open_reply(
    store: ReplyStore,
    source: TokenSource,
    *,
    subject: str,
    message: str,
    conversation_id: str | None,
    last_event_id: str | None,
    span: tracing.StreamSpan = tracing.NO_SPAN,
) -> tuple[Reply | None, int]:
    """The reply to stream and the first token index to send.

    ``(None, 0)`` means the Last-Event-ID names no reply this subject may
    resume (malformed, unknown, expired, past the reply's end, another
    conversation's or another subject's: the answer does not tell which).
    """
    try:
        if last_event_id is None:
            reply = await store.start(
                source,
                message,
                subject=subject,
                conversation_id=conversation_id or f"conv_{uuid.uuid4().hex}",
                message_id=f"msg_{uuid.uuid4().hex}",
                span=span,
            )
            return reply, 0
        event_id = parse_event_id(last_event_id)
        if event_id is None:
            metrics.RESUME_UNAVAILABLE.inc()
            return None, 0
        found = await store.open(event_id.message_id)
    except NotOwner as exc:
        # The same answer as for a conversation that does not exist.
        raise NOT_FOUND from exc
    except StoreFull as exc:
        raise _FULL[exc.code] from exc
    except StoreUnavailable as exc:
        raise UNAVAILABLE from exc
    if (
        found is None
        or found.subject != subject
        or conversation_id not in (None, found.conversation_id)
        or _past_the_end(found, event_id.token_index, store.limits.max_reply_tokens)
    ):
        metrics.RESUME_UNAVAILABLE.inc()
        return None, 0
    metrics.RESUMED[metrics.THIS_PROCESS if found.producer == store.process else metrics.OTHER_PROCESS].inc()
    return found, event_id.token_index + 1


def _past_the_end(reply: Reply, index: int, max_tokens: int) -> bool:
    """Whether token ``index`` is one this reply will never have.

    Known at once when the reply has ended, or past the tokens' bound. For a
    reply still generating elsewhere this process's mirror may lag behind
    what the client saw (writes are batched), so an index past its tokens is
    not refused here: the stream says ``resume_unavailable`` if the reply
    ends short of it (app.streaming.reply_events).
    """
    return index >= max_tokens or (reply.done and index >= len(reply.tokens))


async def open_stream(
    store: ReplyStore,
    source: TokenSource,
    settings: Settings,
    principal: Principal,
    *,
    message: str,
    conversation_id: str | None,
    last_event_id: str | None,
    stream: OpenStream,
    request: StreamRequest,
) -> AsyncGenerator[ChatEvent | None, None]:
    """The events for one connection, or :class:`Refused` before any of them."""
    if len(message) > settings.max_message_chars:
        raise too_long(settings.max_message_chars)
    if last_event_id is None:
        # A new reply: its stream's span starts now, so that the generation
        # (the model call) is its child (app.tracing).
        request = replace(request, span=start_span(request))
    try:
        reply, from_index = await open_reply(
            store,
            source,
            subject=principal.subject,
            message=message,
            conversation_id=conversation_id,
            last_event_id=last_event_id,
            span=request.span or tracing.NO_SPAN,
        )
    except Refused as refused:
        if request.span is not None:
            request.span.end("refused", refused.code, 0)
        raise
    return events_for(
        store,
        reply,
        request,
        stream=stream,
        from_index=from_index,
        retry_ms=settings.client_retry_ms,
        shutdown_retry_ms=settings.shutdown_retry_ms,
        expires_in=principal.seconds_left(),
    )
