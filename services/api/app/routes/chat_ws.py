"""WS /api/chat/message/ws: the same reply over a WebSocket, for intermediaries
that buffer or block event streams and cannot be configured.

The client sends one JSON text frame, ``{"message", "conversation_id"?,
"last_event_id"?}``, and receives the events of ``app.events`` one JSON
frame each; the server then closes with 1000. Bad input closes the socket
before any event, with a code and a reason:

    1008  first_frame_timeout  no request frame within CHAT_WS_FIRST_FRAME_SECONDS
    1003  unsupported_data     a binary frame (the request is one JSON text frame)
    1007  invalid_json         the frame is not JSON, or nested too deeply
    1008  validation_error     a field is missing or invalid (the reason says which)
    1009  message_too_long     longer than CHAT_MAX_MESSAGE_CHARS
                               (frames over 64 KiB are refused by the server itself)
    1013  too_many_streams, store_full, store_unavailable   no new reply can start now
    1008  conversation_not_found   the conversation is another subject's

A ``last_event_id`` that names no token of a reply the caller may resume
(malformed, unknown, expired, past the reply's end) gets one
``resume_unavailable`` error event and 1000, as over HTTP.

The token comes as a subprotocol, ``bearer.<token>``, beside ``chat.v1``
(see app/auth.py). A refused handshake gets the HTTP API's JSON error, before
the upgrade: 401 ``missing_token`` or ``invalid_token``, 403
``insufficient_scope``, 403 ``origin_not_allowed`` (below), and 500
``internal_error`` for an exception no handler expects while the handshake
is judged (a failure while FastAPI resolves the route's dependencies, which
only read what start-up set, is uvicorn's plain 500). It is sent as
ASGI's WebSocket denial response, which uvicorn supports; a server without it
gets a close before the accept, which it answers with an empty 403.

Server pings (every 20 s, see app/worker.py) keep idle connections alive.

Browsers send an Origin header with the handshake and CORS does not apply to
WebSockets (Starlette's CORS middleware passes them through), so the origin
is checked here, before the token: the page's own origin, or one in
CHAT_CORS_ORIGINS. Any other origin gets 403 ``origin_not_allowed``, and
learns nothing about its token. Clients that send no Origin
(not browsers) are not checked. An origin is scheme, host and port (RFC 6454):
a page on another port or scheme of the same host is another origin.
"""

import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing, suppress
from typing import Annotated
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, Depends, WebSocket
from pydantic import Field, ValidationError
from starlette.websockets import WebSocketDisconnect

from app import access_log
from app.auth import REALM, WEBSOCKET_PROTOCOL, Authenticator, AuthError, Principal, get_authenticator, websocket_token
from app.conversation import Refused, open_stream
from app.deps import OpenStreamsDep, SettingsDep, SourceDep, StoreDep
from app.errors import ApiError, internal_error, log_unexpected
from app.events import ChatEvent
from app.schemas import ChatRequest
from app.streaming import StreamRequest

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/chat", tags=["chat"])


class WebSocketChatRequest(ChatRequest):
    # No length or pattern: a malformed or over-long id gets the same
    # resume_unavailable event as an unknown one (app.events.parse_event_id).
    last_event_id: str | None = Field(default=None, description="Resume after this event id.")


_DEFAULT_PORTS = {"http": 80, "https": 443}
# The scheme of the page that opened the socket, from the handshake's scheme:
# uvicorn sets "wss" or "ws" from the proxy's X-Forwarded-Proto, and from the
# connection itself when there is no trusted proxy.
_PAGE_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}

Origin = tuple[str, str, int]  # scheme, host (lower case, IPv6 without brackets), port


def _serialized(origin: Origin) -> str:
    """An origin as browsers write it: no default port, IPv6 in brackets."""
    scheme, host, port = origin
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}" if port == _DEFAULT_PORTS[scheme] else f"{scheme}://{netloc}:{port}"


def _parse_origin(value: str) -> Origin | None:
    """The origin an Origin header names, or None when it is not one a
    browser would send (``null``, a path, credentials, another scheme, a
    default port spelled out, upper case...): those match nothing."""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    origin = (parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme])
    return origin if _serialized(origin) == value else None


def _page_origin(websocket: WebSocket) -> Origin | None:
    """The origin of a page served by the host this handshake was sent to:
    the scheme the client used, and the Host header, whose port may be left
    out when it is the scheme's default (and is then normalised to it).
    Behind a proxy this needs the client's Host with its port (nginx's
    $http_host, not $host: snippets/location/proxy_headers.conf)."""
    scheme = _PAGE_SCHEMES.get(websocket.scope.get("scheme", ""))
    host = urlsplit("//" + websocket.headers.get("host", ""))
    try:
        port = host.port
    except ValueError:
        return None
    if scheme is None or not host.hostname:
        return None
    return scheme, host.hostname, port or _DEFAULT_PORTS[scheme]


def _origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None or origin in allowed:  # CHAT_CORS_ORIGINS entries match exactly
        return True
    page = _page_origin(websocket)
    return page is not None and _parse_origin(origin) == page


def _admit(websocket: WebSocket, allowed_origins: list[str], authenticator: Authenticator) -> Principal:
    """The caller, or the :class:`ApiError` that refuses the handshake."""
    if not _origin_allowed(websocket, allowed_origins):
        raise ApiError(403, "origin_not_allowed", "This origin may not open the chat WebSocket.")
    token = websocket_token(websocket)
    if not token:
        raise AuthError(401, "missing_token", "Send the token as a subprotocol: bearer.<token>, beside chat.v1.", REALM)
    return authenticator.verify(token)


async def _deny(websocket: WebSocket, error: ApiError) -> None:
    """Answer the handshake with ``error`` as JSON, before the upgrade."""
    access_log.note(error=error.code)
    if "websocket.http.response" not in websocket.scope.get("extensions", {}):
        await websocket.close(code=1008)  # the server answers an empty 403
        return
    with suppress(WebSocketDisconnect):  # a client that already left needs no answer
        await websocket.send_denial_response(error.response())


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    # A client that already left needs no answer, and is no error (_send_reply).
    with suppress(WebSocketDisconnect):
        await websocket.close(code=code, reason=reason.encode()[:123].decode(errors="ignore"))


def _binary_frame() -> Refused:
    return Refused(415, "unsupported_data", "send the request as one JSON text frame", 1003)


def _invalid_json() -> Refused:
    return Refused(400, "invalid_json", "the frame is not valid JSON", 1007)


def _first_frame_timeout(seconds: float) -> Refused:
    return Refused(408, "first_frame_timeout", f"no request frame within {seconds:g} s", 1008)


async def _read_request(websocket: WebSocket, deadline_seconds: float) -> WebSocketChatRequest:
    """The first frame as a request, or :class:`Refused` with the close code
    and reason that say what is wrong with it.

    Every kind of frame gets an answer, never a dropped connection: a binary
    frame (no "text" in the message), JSON nested past the parser's
    recursion limit (pydantic's parser reports it as invalid JSON, where
    ``json.loads`` would raise RecursionError), a field that does not validate.
    So does silence: the server answers the client's pings by itself, so a
    socket that never sends its frame would otherwise stay open for good.
    Raises WebSocketDisconnect when the client leaves first.
    """
    try:
        with anyio.fail_after(deadline_seconds):
            message = await websocket.receive()
    except TimeoutError as exc:
        raise _first_frame_timeout(deadline_seconds) from exc
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1005), message.get("reason"))
    text = message.get("text")
    if not isinstance(text, str):
        raise _binary_frame()
    try:
        return WebSocketChatRequest.model_validate_json(text)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise _invalid_json() from exc
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise Refused(422, "validation_error", fields, 1008) from exc


@router.websocket("/message/ws")
async def chat_over_websocket(
    websocket: WebSocket,
    settings: SettingsDep,
    source: SourceDep,
    store: StoreDep,
    streams: OpenStreamsDep,
    authenticator: Annotated[Authenticator, Depends(get_authenticator)],
) -> None:
    try:
        principal = _admit(websocket, settings.cors_origins, authenticator)
    except ApiError as exc:
        return await _deny(websocket, exc)
    except Exception:
        # Starlette's JSON 500 skips WebSockets: uncaught, this would be
        # uvicorn's plain-text 500.
        log_unexpected(websocket.scope)
        return await _deny(websocket, internal_error())
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=WEBSOCKET_PROTOCOL if WEBSOCKET_PROTOCOL in offered else None)
    stream = streams.stream(sse=False)
    try:
        request = await _read_request(websocket, settings.ws_first_frame_seconds)
        # The request is the frame: time to first token counts from its arrival.
        arrived_at = time.perf_counter()
        events = await open_stream(
            store,
            source,
            settings,
            principal,
            message=request.message,
            conversation_id=request.conversation_id,
            last_event_id=request.last_event_id,
            stream=stream,
            request=StreamRequest(
                transport="websocket",
                arrived_at=arrived_at,
                request_id=websocket.scope.get("state", {}).get("request_id"),
                headers=websocket.headers,
            ),
        )
    except WebSocketDisconnect:
        return
    except Refused as exc:
        return await _refuse(websocket, exc.close_code, f"{exc.code}: {exc.message}")
    with stream:
        await _send_reply(websocket, events)


async def _send_reply(websocket: WebSocket, events: AsyncGenerator[ChatEvent | None, None]) -> None:
    """Send every event, then close with 1000; stop as soon as the client leaves.

    A client that leaves mid-reply (a closed tab, a lost network) is expected,
    not an error. The send or the close that finds the connection gone raises
    WebSocketDisconnect (Starlette's form of uvicorn's ClientDisconnected);
    uncaught, it ended the connection with a traceback at ERROR level, which
    counts in error-rate alerts. It ends the reply here with one INFO line.
    """
    left: int | None = None  # the close code, once the client has gone
    async with anyio.create_task_group() as tasks:

        async def stop_when_the_client_leaves() -> None:
            nonlocal left
            while (message := await websocket.receive())["type"] != "websocket.disconnect":
                pass  # the client has nothing more to say; ignore further frames
            left = message.get("code", 1005)
            tasks.cancel_scope.cancel()

        tasks.start_soon(stop_when_the_client_leaves)
        try:
            async with aclosing(events):
                async for event in events:
                    if event is not None:  # never None: a WebSocket has no SSE heartbeats
                        await websocket.send_text(event.to_json())
        except WebSocketDisconnect as exc:
            left = exc.code
        tasks.cancel_scope.cancel()
    if left is None:
        try:
            await websocket.close(code=1000)
        except WebSocketDisconnect as exc:
            left = exc.code
    if left is not None:
        logger.info("a WebSocket client left before the end of its reply (close code %s)", left)
