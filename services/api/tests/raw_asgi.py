"""Drive the app at the ASGI level, inside a running TestClient's event loop.

For what the TestClient cannot send or cannot do: header bytes that are not
UTF-8 (it re-encodes every header value as UTF-8), and a server's ``send``
that fails the way uvicorn's does once the client has gone.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Send

Headers = list[tuple[bytes, bytes]]


def http_scope(path: str, headers: Headers, method: str = "POST") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def websocket_scope(path: str, headers: Headers, subprotocols: list[str]) -> dict[str, Any]:
    return {
        **http_scope(path, headers, "GET"),
        "type": "websocket",
        "scheme": "ws",
        "subprotocols": subprotocols,
    }


def post(client: TestClient, app: ASGIApp, path: str, headers: Headers, body: bytes) -> tuple[int, bytes]:
    """The status and the whole body of one POST with exactly these header bytes."""
    messages: list[Message] = []
    requests = [{"type": "http.request", "body": body, "more_body": False}]
    finished = anyio.Event()

    async def receive() -> Message:
        if requests:
            return requests.pop()
        await finished.wait()  # then the client is gone, as a server would say
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    run(client, app, http_scope(path, headers), receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def run(client: TestClient, app: ASGIApp, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Call the app in the client's event loop (where its lifespan made the store)."""

    async def call() -> None:
        await app(scope, receive, send)

    call_in_loop(client, call)


def call_in_loop(client: TestClient, function: Callable[[], Awaitable[None]]) -> None:
    portal = client.portal
    assert portal is not None, "use the client as a context manager"
    portal.call(function)


def run_websocket(
    client: TestClient, app: ASGIApp, subprotocols: list[str], receive: Receive, send: Send, *, timeout: float
) -> None:
    """One WebSocket session with the given receive and send; fails if the
    app has not returned within ``timeout`` seconds."""
    scope = websocket_scope("/api/chat/message/ws", [], subprotocols)

    async def call() -> None:
        with anyio.fail_after(timeout):
            await app(scope, receive, send)

    call_in_loop(client, call)
