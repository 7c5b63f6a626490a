"""The gunicorn worker: uvicorn's, with WebSocket limits this API needs.

``uvicorn_worker.UvicornWorker`` passes only a few of uvicorn's settings from
gunicorn; the WebSocket ones are set here, with the WebSocket protocol below.
Ref: https://www.uvicorn.org/settings/#implementation
"""

from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn_worker import UvicornWorker

if TYPE_CHECKING:  # a private module of uvicorn's: for the type checker only
    from uvicorn._types import ASGISendEvent


class ChatWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol (websockets' sans-I/O implementation, the
    one uvicorn picks by default), with one fix. A refused handshake is
    answered with an HTTP response (ASGI's denial response: app/routes/chat_ws.py),
    after which the handshake is over; uvicorn 0.54 does not mark it so, and
    when the app returns it logs "ASGI callable returned without completing
    handshake." at ERROR for every refused token. Its wsproto implementation
    marks it; this does the same. tests/test_worker.py fails if a uvicorn
    upgrade makes the class useless or wrong."""

    async def send(self, message: "ASGISendEvent") -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True


class ChatUvicornWorker(UvicornWorker):  # type: ignore[misc]  # uvicorn-worker ships no type hints
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "ws": ChatWebSocketProtocol,
        # A chat message is small: refuse larger frames (close 1009) before
        # they are buffered. Default: 16 MiB.
        "ws_max_size": 64 * 1024,
        # Pings keep idle connections open through proxies and find dead
        # peers. Default: 20 s each.
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        # app.access_log writes one line per request, with its request id,
        # duration and a stream's outcome, instead of uvicorn's.
        "access_log": False,
    }
