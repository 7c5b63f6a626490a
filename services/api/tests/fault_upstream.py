"""A fault-injecting OpenAI-compatible server, on a real local port, for the
model source's tests (tests/test_openai_source.py).

``POST /v1/chat/completions`` streams ``data: {chunk}`` events as OpenAI
does (a role chunk, text chunks, a chunk with ``finish_reason``, a usage
chunk, ``data: [DONE]``). The last user message picks the behaviour:

    hello           REPLY, one word a chunk
    echo            the messages it received, as JSON, in 8-character chunks
    slow S          headers at once, then S seconds before the first chunk
    stall N S       N chunks, then S seconds of silence, then the rest
    busy K [S]      429 (Retry-After: S, default 0) to the first K attempts
    fail K          500 to the first K attempts
    status C        HTTP C to every attempt, with an error body (403, 400, 404...)
    drop N          N chunks, then the connection is cut mid-body
    cut N           N chunks, then a clean end with no finish_reason and no [DONE]
    length          REPLY, then finish_reason "length"
    long N MS       N chunks MS milliseconds apart (cancellation tests)

A request whose bearer key is not ``KEY`` gets 401 with OpenAI's error body,
which quotes part of the key. Every attempt is counted and timed (monotonic,
as it arrives), by its command. Every stream is recorded: what was sent, how
many chunks, and when and how it ended ("complete" or "disconnected").
"""

import asyncio
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

KEY = "fault-upstream-key-0123456789"
REPLY = ["Hello", " from", " the", " model", "."]


@dataclass
class Upstream:
    """One streamed response, as the server saw it."""

    messages: list[dict[str, Any]]
    chunks: int = 0
    ended: str = ""  # "complete" or "disconnected"
    ended_at: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 0, "model": "fault"}
    return f"data: {json.dumps({**body, 'choices': choices, 'usage': usage})}\n\n".encode()


class FaultUpstream:
    def __init__(self) -> None:
        self.streams: list[Upstream] = []
        self.attempts: Counter[str] = Counter()
        self.attempted_at: defaultdict[str, list[float]] = defaultdict(list)
        app = Starlette(routes=[Route("/v1/chat/completions", self._complete, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> "FaultUpstream":
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the fault server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    @property
    def base_url(self) -> str:
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def _complete(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {KEY}":
            error = {"message": f"Incorrect API key provided: {request.headers.get('authorization', '')[7:12]}***"}
            return JSONResponse({"error": {**error, "type": "invalid_request_error"}}, status_code=401)
        body = await request.json()
        command, *args = body["messages"][-1]["content"].split()
        self.attempts[command] += 1
        self.attempted_at[command].append(time.monotonic())
        if command == "status":
            error = {"message": f"fault injected: HTTP {args[0]}", "type": "invalid_request_error"}
            return JSONResponse({"error": error}, status_code=int(args[0]))
        if command in ("busy", "fail") and self.attempts[command] <= int(args[0]):
            if command == "fail":
                return JSONResponse({"error": {"message": "internal"}}, status_code=500)
            return JSONResponse({"error": {"message": "slow down"}}, 429, {"Retry-After": args[1] if args[1:] else "0"})
        upstream = Upstream(body["messages"])
        self.streams.append(upstream)
        return StreamingResponse(self._events(upstream, command, args), media_type="text/event-stream")

    async def _events(self, upstream: Upstream, command: str, args: list[str]) -> AsyncIterator[bytes]:
        texts, delay, finish = list(REPLY), 0.0, "stop"
        if command == "echo":
            dump = json.dumps(upstream.messages, ensure_ascii=False)
            texts = [dump[i : i + 8] for i in range(0, len(dump), 8)]
        elif command == "long":
            texts, delay = [f" w{i}" for i in range(int(args[0]))], int(args[1]) / 1000
        elif command == "length":
            finish = "length"
        try:
            yield _chunk({"role": "assistant", "content": ""})
            if command == "slow":
                await asyncio.sleep(float(args[0]))
            for index, text in enumerate(texts):
                if command in ("drop", "cut") and index == int(args[0]):
                    if command == "drop":
                        raise ConnectionAbortedError("fault injected: the connection drops mid-body")
                    upstream.ended = "complete"
                    return
                if command == "stall" and index == int(args[0]):
                    await asyncio.sleep(float(args[1]))
                await asyncio.sleep(delay)
                yield _chunk({"content": text})
                upstream.chunks += 1
            yield _chunk({}, finish)
            yield _chunk({}, usage={"prompt_tokens": 11, "completion_tokens": len(texts), "total_tokens": 11})
            yield b"data: [DONE]\n\n"
            upstream.ended = "complete"
        finally:
            upstream.ended = upstream.ended or "disconnected"
            upstream.ended_at = time.monotonic()
            upstream.done.set()
