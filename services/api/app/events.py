"""The chat event schema, shared by every transport.

A reply is one ``start`` event, zero or more ``token`` events, then exactly one
closing event: ``end`` when the reply is complete, ``error`` when it is not.
A stream that closes without either was cut; clients must not treat it as
complete.

    event: start   data: {"conversation_id": str, "message_id": str, "resumed_from"?: int}
    event: token   id: <message_id>:<index>   data: {"index": int, "text": str}
    event: end     data: {"finish_reason": "stop" | "stopped" | "length", "tokens": int,
                          "usage"?: {"prompt_tokens": int, "completion_tokens": int}}
    event: error   data: {"code": str, "message": str}   (retry: on server shutdown)

``data`` is always one line of JSON (``ensure_ascii=False``: text travels as
UTF-8, not as escapes). JSON escapes CR, LF and NUL, so no text from a token
source can end an event early or forge another one.

The WebSocket fallback carries the same events, one JSON text frame each:
``{"event": "token", "id": "<message_id>:<index>", "data": {...}}``.
"""

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel

from app.replies import Usage

EventName = Literal["start", "token", "end", "error"]


class StartData(BaseModel):
    conversation_id: str
    message_id: str
    resumed_from: int | None = None  # first token index sent, on a resumed stream


class TokenData(BaseModel):
    index: int
    text: str


class UsageData(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class EndData(BaseModel):
    # "stopped": ended early by POST /api/chat/message/{message_id}/stop;
    # "length": the model reached its token limit (CHAT_OPENAI_MAX_TOKENS).
    finish_reason: Literal["stop", "stopped", "length"]
    tokens: int  # token events of the reply
    # What the model server reports the reply cost, when it does (never on a stopped reply).
    usage: UsageData | None = None


class ErrorData(BaseModel):
    code: str
    message: str


# The shape of every message id this API makes (app.conversation): "msg_" and
# a UUID4 in 32 lower-case hex digits. [0-9] and [a-f], not \d or \w: those
# match other scripts' digits and letters too.
MESSAGE_ID = re.compile(r"msg_[0-9a-f]{32}")
# An index is at most 18 ASCII digits, without leading zeros (the form
# token_event_id writes); whether the reply has that token is the store's to say.
_EVENT_ID = re.compile(r"(msg_[0-9a-f]{32}):(0|[1-9][0-9]{0,17})")
MAX_EVENT_ID_LENGTH = 4 + 32 + 1 + 18


class EventId(NamedTuple):
    message_id: str
    token_index: int


def token_event_id(message_id: str, index: int) -> str:
    return f"{message_id}:{index}"


def parse_event_id(value: str) -> EventId | None:
    """The id a client sends back (``Last-Event-ID``, ``last_event_id``), or
    None when it is not exactly one this API writes.

    The one parser of event ids, for both transports. Strict on purpose: the
    id comes from the client, and lenient checks let through values such as
    "msg_...:²" (``str.isdigit()`` is true, ``int()`` refuses it: a 500) or
    Arabic-Indic digits (which ``int()`` reads). A None is answered with
    ``resume_unavailable``, like an unknown id.
    """
    if len(value) > MAX_EVENT_ID_LENGTH:
        return None
    match = _EVENT_ID.fullmatch(value)
    return EventId(match[1], int(match[2])) if match else None


@dataclass(frozen=True)
class ChatEvent:
    name: EventName
    data: dict[str, Any]
    id: str | None = None
    retry: int | None = None

    def to_sse(self) -> bytes:
        """The event as SSE lines: ``id``, ``event``, ``data``, ``retry``, then a blank line.

        The id and name are this API's own (no line breaks); ``data`` is one
        line of JSON, whatever the text holds (see the module docstring).
        """
        data = json.dumps(self.data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        head = f"id: {self.id}\nevent: {self.name}\n" if self.id is not None else f"event: {self.name}\n"
        tail = f"retry: {self.retry}\n\n" if self.retry is not None else "\n"
        return f"{head}data: {data}\n{tail}".encode()

    def to_json(self) -> str:
        frame: dict[str, Any] = {"event": self.name, "data": self.data}
        if self.id is not None:
            frame["id"] = self.id
        if self.retry is not None:
            frame["retry"] = self.retry
        return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def _event(name: EventName, data: BaseModel, *, event_id: str | None = None, retry: int | None = None) -> ChatEvent:
    return ChatEvent(name, data.model_dump(mode="json", exclude_none=True), event_id, retry)


def start(conversation_id: str, message_id: str, *, retry_ms: int, resumed_from: int | None = None) -> ChatEvent:
    data = StartData(conversation_id=conversation_id, message_id=message_id, resumed_from=resumed_from)
    return _event("start", data, retry=retry_ms)


def token(message_id: str, index: int, text: str) -> ChatEvent:
    # The hot path (one call a token a client): TokenData's shape, written
    # directly instead of validated and dumped (test_events checks they agree).
    return ChatEvent("token", {"index": index, "text": text}, token_event_id(message_id, index))


def end(
    tokens: int, finish_reason: Literal["stop", "stopped", "length"] = "stop", usage: Usage | None = None
) -> ChatEvent:
    usage_data = (
        UsageData(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens) if usage else None
    )
    return _event("end", EndData(finish_reason=finish_reason, tokens=tokens, usage=usage_data))


def error(code: str, message: str, *, retry_ms: int | None = None) -> ChatEvent:
    return _event("error", ErrorData(code=code, message=message), retry=retry_ms)


def sse_event_schema() -> dict[str, Any]:
    """JSON Schema of one event as an SSE parser yields it, for the OpenAPI document.

    Before OpenAPI 3.2, the ``schema`` of a ``text/event-stream`` response
    describes each event: an object with ``event``, ``data`` (a string: JSON
    whose shape ``contentSchema`` gives), ``id`` and ``retry``.
    """
    shapes: list[tuple[EventName, type[BaseModel], bool]] = [
        ("start", StartData, False),
        ("token", TokenData, True),
        ("end", EndData, False),
        ("error", ErrorData, False),
    ]
    return {
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "event": {"const": name},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": model.model_json_schema(),
                    },
                    "id": {"type": "string"},
                    "retry": {"type": "integer", "minimum": 0},
                },
                # An SSE parser carries the last id over to the events after
                # it, so only the token events are known to have one.
                "required": ["event", "data", "id"] if has_id else ["event", "data"],
            }
            for name, model, has_id in shapes
        ]
    }


# A comment line: EventSource and fetch-based parsers ignore it, but it is
# payload, so proxies and load balancers see the connection as busy.
HEARTBEAT = b": ping\n\n"
