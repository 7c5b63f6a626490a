"""POST /api/chat/message/stream: one chat reply as Server-Sent Events.

Every check runs before the first stream byte, so a bad request gets a status
code and a JSON error (see :mod:`app.errors`), never a 200 followed by an
error event.
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError

from app import events
from app.config import Settings, get_settings
from app.errors import ApiError
from app.schemas import ChatRequest, ErrorBody
from app.streaming import EventStreamResponse, reply_events
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
        fault_injection=settings.twin_fault_injection,
    )


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
        (415, "The body is not application/json."),
        (422, "The message is missing, blank or too long, or a field is invalid."),
    )
}

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The reply as Server-Sent Events: start, token..., then end or error.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
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
    settings: SettingsDep,
    source: Annotated[TokenSource, Depends(get_token_source)],
) -> EventStreamResponse:
    _check_length(body, settings)
    conversation_id = body.conversation_id or f"conv_{uuid.uuid4().hex}"
    message_id = f"msg_{uuid.uuid4().hex}"
    stream = reply_events(
        source,
        body.message,
        conversation_id=conversation_id,
        message_id=message_id,
        retry_ms=settings.client_retry_ms,
    )
    return EventStreamResponse(
        stream,
        ping=settings.heartbeat_seconds,
        ping_message_factory=events.heartbeat,
        send_timeout=settings.send_timeout_seconds or None,
    )
