"""A real uvicorn server on a free local port, in a thread of the test
process, for what only uvicorn itself does (its WebSocket protocol, its log
lines). It leaves the process's logging configuration alone.

:data:`REFUSE_OR_ECHO` is the WebSocket app the tests of the worker's
protocol and of the log filters serve: a handshake refused the way the chat
WebSocket refuses one (ASGI's denial response), or accepted.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket, WebSocketDisconnect


async def _refuse_or_echo(websocket: WebSocket) -> None:
    """Refuses a handshake that does not offer the "ok" subprotocol (401,
    "refused"); accepts one that does and echoes its text frames until the
    client leaves."""
    if "ok" not in websocket.scope["subprotocols"]:
        await websocket.send_denial_response(PlainTextResponse("refused", status_code=401))
        return
    await websocket.accept(subprotocol="ok")
    with suppress(WebSocketDisconnect):
        while True:
            await websocket.send_text(await websocket.receive_text())


REFUSE_OR_ECHO = Starlette(routes=[WebSocketRoute("/ws", _refuse_or_echo)])


@contextmanager
def serving(app: ASGIApp, **config: Any) -> Iterator[int]:
    """Serve ``app`` until the block ends; yields the port."""
    settings = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None, **config)
    server = uvicorn.Server(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
