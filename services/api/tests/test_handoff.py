"""The stream a route defers runs after the request handling returned, and
never after that handling already answered (a failure past the route)."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from app import errors
from app.handoff import Deferred, StreamHandoff
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from starlette.responses import StreamingResponse
from starlette.types import Message


def app_with(teardown_fails: bool) -> FastAPI:
    def resource() -> Iterator[None]:
        yield
        if teardown_fails:
            raise RuntimeError("the dependency's teardown failed")

    app = FastAPI()
    errors.install(app)
    app.add_middleware(errors.UnexpectedErrors)
    app.add_middleware(StreamHandoff)

    async def body() -> AsyncIterator[bytes]:
        yield b"data: streamed\n\n"

    @app.get("/stream")
    async def stream(_: Annotated[None, Depends(resource)]) -> Deferred:
        return Deferred(StreamingResponse(body(), media_type="text/event-stream"))

    return app


def test_a_deferred_stream_runs_once_the_route_returned() -> None:
    with TestClient(app_with(teardown_fails=False)) as client:
        response = client.get("/stream")
    assert (response.status_code, response.text) == (200, "data: streamed\n\n")


def test_a_failure_after_the_route_gets_one_json_500_and_no_stream() -> None:
    """Called as a server calls it, to see every message sent (a test client
    keeps the first response and drops a second start)."""
    sent: list[Message] = []

    requested = False

    async def receive() -> Message:
        nonlocal requested
        if requested:  # the request was read: the client leaves soon after
            await asyncio.sleep(0.5)
            return {"type": "http.disconnect"}
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/stream",
        "raw_path": b"/stream",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app_with(teardown_fails=True)(scope, receive, send))
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [500]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert json.loads(body) == {
        "error": {"code": "internal_error", "message": "The server failed to answer. Retry shortly."}
    }
