"""POST /api/chat/message/stream: one chat reply as Server-Sent Events.

Every check runs before the first stream byte, so a bad request gets a status
code and a JSON error (see :mod:`app.errors`), never a 200 followed by an
error event. A request with ``Last-Event-ID`` resumes the reply that id
belongs to, from the next token, instead of starting a new one.
"""

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from starlette.requests import HTTPConnection

from app.auth import Authenticator, Principal, bearer_token, get_authenticator
from app.config import Settings, get_settings
from app.conversation import open_reply
from app.errors import ApiError
from app.events import heartbeat, sse_event_schema
from app.replies import NotOwner, ReplyStore, StoreFull
from app.schemas import ChatRequest, ErrorBody
from app.streaming import SHUTDOWN_GRACE_SECONDS, EventStreamResponse, events_for
from app.token_source import TokenSource
from app.twin import Twin

router = APIRouter(prefix="/api/chat", tags=["chat"])

SettingsDep = Annotated[Settings, Depends(get_settings)]


def require_json(request: Request) -> None:
    # FastAPI would read any other content type as raw bytes and answer a
    # vague 422; a client that sends form data deserves to hear why.
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the request body as application/json.")


def get_token_source(settings: SettingsDep) -> TokenSource:
    return Twin(
        tokens=settings.twin_reply_tokens,
        delay_seconds=settings.twin_token_delay_seconds,
        test_hooks=settings.twin_test_hooks,
    )


def authenticate(
    token: Annotated[str, Depends(bearer_token)], authenticator: Annotated[Authenticator, Depends(get_authenticator)]
) -> Principal:
    return authenticator.verify(token)


NOT_FOUND = "No such conversation."


def get_store(request: HTTPConnection) -> ReplyStore:
    store: ReplyStore = request.app.state.replies
    return store


def _check_length(body: ChatRequest, settings: Settings) -> None:
    # The limit is a setting, so it cannot live in the model's Field(); the
    # error has the same shape as pydantic's own.
    limit = settings.max_message_chars
    if len(body.message) > limit:
        raise RequestValidationError(
            [
                {
                    "type": "string_too_long",
                    "loc": ("body", "message"),
                    "msg": f"String should have at most {limit} characters",
                    "input": None,
                }
            ]
        )


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "The body is not valid JSON."),
        (401, "No token, or an invalid or expired one (see WWW-Authenticate)."),
        (403, "The token lacks the chat:stream scope."),
        (404, "The conversation does not exist for this subject."),
        (415, "The body is not application/json."),
        (422, "The message is missing, blank or too long, or a field is invalid."),
        (413, "The body is over 64 KiB (the proxy's limit)."),
        (429, "Too many open streams, or new streams, from this client (the proxy's limits; see Retry-After)."),
        (503, "Too many replies are being generated; retry later."),
    )
}

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The reply as Server-Sent Events: start, token..., then end or error.",
        "content": {"text/event-stream": {"schema": sse_event_schema()}},
    }
}


@router.post(
    "/message/stream",
    response_class=EventStreamResponse,
    status_code=200,
    responses={**_STREAM_DOC, **_ERRORS},
    dependencies=[Depends(require_json)],
)
async def stream_message(
    body: ChatRequest,
    principal: Annotated[Principal, Depends(authenticate)],
    settings: SettingsDep,
    source: Annotated[TokenSource, Depends(get_token_source)],
    store: Annotated[ReplyStore, Depends(get_store)],
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="Resume after this event id.", max_length=200)
    ] = None,
) -> EventStreamResponse:
    _check_length(body, settings)
    shutdown = anyio.Event()  # set by sse-starlette when the server begins to stop
    try:
        reply, from_index = open_reply(
            store,
            source,
            subject=principal.subject,
            message=body.message,
            conversation_id=body.conversation_id,
            last_event_id=last_event_id,
        )
    except NotOwner as exc:
        # The same answer as for a conversation that does not exist.
        raise ApiError(404, "conversation_not_found", NOT_FOUND) from exc
    except StoreFull as exc:
        raise ApiError(503, "too_many_streams", "Too many replies are being generated. Retry shortly.") from exc
    stream = events_for(
        store,
        reply,
        from_index=from_index,
        shutdown=shutdown,
        retry_ms=settings.client_retry_ms,
        shutdown_retry_ms=settings.shutdown_retry_ms,
        expires_in=principal.seconds_left(),
    )
    return EventStreamResponse(
        stream,
        ping=settings.heartbeat_seconds,
        ping_message_factory=heartbeat,
        send_timeout=settings.send_timeout_seconds or None,
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
        split_characters=settings.twin_test_hooks and body.message.startswith("/split"),
    )
