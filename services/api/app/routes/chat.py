"""POST /api/chat/message/stream: one chat reply as Server-Sent Events.
POST /api/chat/message/{message_id}/stop: end a reply early.

Every check runs before the first stream byte, so a bad request gets a status
code and a JSON error (see :mod:`app.errors`), never a 200 followed by an
error event. A request with ``Last-Event-ID`` resumes the reply that id
belongs to, from the next token, instead of starting a new one.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.conversation import UNAVAILABLE, Refused, open_stream
from app.deps import AuthenticatedRoute, OpenStreamsDep, PrincipalDep, SettingsDep, SourceDep, StoreDep
from app.errors import ApiError
from app.events import MESSAGE_ID, sse_event_schema
from app.handoff import Deferred
from app.replies import StoreUnavailable
from app.schemas import ChatRequest, ErrorBody
from app.sse_response import EventStreamResponse
from app.streaming import StreamRequest, arrival

# Every route here needs a token, checked before the body (401 first).
router = APIRouter(prefix="/api/chat", tags=["chat"], route_class=AuthenticatedRoute)


def require_json(request: Request) -> None:
    # FastAPI would read any other content type as raw bytes and answer a
    # vague 422; a client that sends form data deserves to hear why.
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the request body as application/json.")


def _too_long(limit: int) -> RequestValidationError:
    # The limit is a setting, so it cannot live in the model's Field(); the
    # error has the same shape as pydantic's own.
    return RequestValidationError(
        [
            {
                "type": "string_too_long",
                "loc": ("body", "message"),
                "msg": f"String should have at most {limit} characters",
                "input": None,
            }
        ]
    )


_UNAVAILABLE = """Too many replies are being generated (too_many_streams), or the reply
store is full (store_full) or unreachable (store_unavailable); retry later."""
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
        (503, _UNAVAILABLE),
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
    request: Request,
    body: ChatRequest,
    principal: PrincipalDep,
    settings: SettingsDep,
    source: SourceDep,
    store: StoreDep,
    streams: OpenStreamsDep,
    # No length or pattern here: a malformed or over-long id gets the same
    # resume_unavailable event as an unknown one (app.events.parse_event_id).
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="Resume after this event id.")
    ] = None,
) -> Deferred:
    stream = streams.stream(sse=True)
    try:
        events = await open_stream(
            store,
            source,
            settings,
            principal,
            message=body.message,
            conversation_id=body.conversation_id,
            last_event_id=last_event_id,
            stream=stream,
            request=StreamRequest(
                transport="sse",
                arrived_at=arrival(request.scope),
                request_id=request.state.request_id,
                headers=request.headers,
            ),
        )
    except Refused as exc:
        if exc.close_code == 1009:
            raise _too_long(settings.max_message_chars) from exc
        raise ApiError(exc.status, exc.code, exc.message) from exc
    # Run after FastAPI's request handling has returned (app.handoff).
    return Deferred(
        EventStreamResponse(
            events,
            stream,
            split_characters=settings.twin_test_hooks and body.message.startswith("/split"),
        )
    )


class StopResult(BaseModel):
    message_id: str
    # "stopping": the reply ends with `end` and finish_reason "stopped";
    # "finished": it had already ended, nothing to stop.
    status: Literal["stopping", "finished"]


@router.post(
    "/message/{message_id}/stop",
    response_model=StopResult,
    status_code=202,
    responses={
        200: {"model": StopResult, "description": "The reply had already ended."},
        **{status: _ERRORS[status] for status in (401, 403, 404, 503)},
    },
)
async def stop_message(
    message_id: Annotated[str, Path(description="The start event's message_id.")],
    principal: PrincipalDep,
    store: StoreDep,
) -> Any:
    """Stop generating a reply, on whichever process generates it. Only its
    owner may; for anyone else, as for an unknown id, the answer is 404."""
    not_found = ApiError(404, "message_not_found", "No such message.")
    if not MESSAGE_ID.fullmatch(message_id):
        raise not_found
    try:
        reply = await store.open(message_id)
        if reply is None or reply.subject != principal.subject:
            raise not_found
        with store.attach(reply):
            if reply.done:
                return JSONResponse(StopResult(message_id=message_id, status="finished").model_dump(), status_code=200)
            await store.stop(reply)
    except StoreUnavailable as exc:
        raise ApiError(UNAVAILABLE.status, UNAVAILABLE.code, UNAVAILABLE.message) from exc
    return StopResult(message_id=message_id, status="stopping")
