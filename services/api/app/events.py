"""The chat event schema, shared by every transport.

A reply is one ``start`` event, zero or more ``token`` events, then exactly one
closing event: ``end`` when the reply is complete, ``error`` when it is not.
A stream that closes without either was cut; clients must not treat it as
complete.

    event: start   data: {"conversation_id": str, "message_id": str, "resumed_from"?: int}
    event: token   id: <message_id>:<index>   data: {"index": int, "text": str}
    event: end     data: {"finish_reason": "stop", "tokens": int}
    event: error   data: {"code": str, "message": str}   (retry: on server shutdown)

``data`` is always one line of JSON (``ensure_ascii=False``: text travels as
UTF-8, not as escapes). JSON escapes CR, LF and NUL, so no text from a token
source can end an event early or forge another one.
"""

from typing import Literal

from pydantic import BaseModel
from sse_starlette import JSONServerSentEvent, ServerSentEvent

EventName = Literal["start", "token", "end", "error"]


class StartData(BaseModel):
    conversation_id: str
    message_id: str
    resumed_from: int | None = None  # first token index sent, on a resumed stream


class TokenData(BaseModel):
    index: int
    text: str


class EndData(BaseModel):
    finish_reason: Literal["stop"]
    tokens: int


class ErrorData(BaseModel):
    code: str
    message: str


def token_event_id(message_id: str, index: int) -> str:
    return f"{message_id}:{index}"


def _event(name: EventName, data: BaseModel, *, event_id: str | None = None) -> ServerSentEvent:
    return JSONServerSentEvent(data.model_dump(mode="json", exclude_none=True), event=name, id=event_id, sep="\n")


def start(conversation_id: str, message_id: str, *, retry_ms: int, resumed_from: int | None = None) -> ServerSentEvent:
    data = StartData(conversation_id=conversation_id, message_id=message_id, resumed_from=resumed_from)
    event = _event("start", data)
    event.retry = retry_ms
    return event


def token(message_id: str, index: int, text: str) -> ServerSentEvent:
    return _event("token", TokenData(index=index, text=text), event_id=token_event_id(message_id, index))


def end(tokens: int) -> ServerSentEvent:
    return _event("end", EndData(finish_reason="stop", tokens=tokens))


def error(code: str, message: str, *, retry_ms: int | None = None) -> ServerSentEvent:
    event = _event("error", ErrorData(code=code, message=message))
    event.retry = retry_ms
    return event


def heartbeat() -> ServerSentEvent:
    # A comment line: EventSource and fetch-based parsers ignore it, but it is
    # payload, so proxies and load balancers see the connection as busy.
    return ServerSentEvent(comment="ping", sep="\n")
