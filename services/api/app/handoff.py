"""Run a stream after the framework's request handling has returned.

A response runs inside every layer that handled its request: Starlette's
exception middleware, the router, FastAPI's route with its exit stacks, the
parsed body and the solved dependencies. For an ordinary response that is
microseconds. A stream lives for minutes, and those frames and objects live
with it: 9.4 KiB of each held stream's memory (37.3 KiB a stream without
the handoff, 27.9 KiB with it: `make bench-memory`, 2,000 streams; README,
"Performance").

So the streaming route returns :class:`Deferred`, which sends nothing and
leaves the real response on the request's scope; FastAPI and Starlette
return as for any other request, and :class:`StreamHandoff` (inside every
middleware but app.errors' 500 for unexpected exceptions) then runs the
stream with the same ``receive`` and ``send`` (still wrapped by the outer
middleware: CORS, request id, access log).
Everything before the first stream byte is unchanged: validation, the token,
the JSON errors of :mod:`app.errors`.
"""

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_KEY = "deferred_stream"


class Deferred(Response):
    """What the route returns: ``stream`` runs once the request handling returned."""

    def __init__(self, stream: Response) -> None:
        self.stream = stream
        self.background = None  # FastAPI attaches the request's background tasks here

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})[_KEY] = self


class StreamHandoff:
    """Runs the stream a :class:`Deferred` left. Add it inside every
    middleware that must wrap the stream's sends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answered = False

        async def watched_send(message: Message) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, receive, watched_send)
        del watched_send  # not held for the stream's lifetime
        deferred: Deferred | None = scope.get("state", {}).pop(_KEY, None)
        # A failure after the route returned (a dependency's teardown) was
        # answered already (app.errors' 500): the stream must not start a
        # second response. Its reply is then left as a client that leaves
        # before the first byte leaves it.
        if deferred is not None and not answered:
            # FastAPI keeps its request's exit stacks (closed by now) on the
            # scope, which outlives this call: 2.5 KiB a stream.
            for key in [key for key in scope if key.startswith("fastapi_")]:
                del scope[key]
            await deferred.stream(scope, receive, send)
            if deferred.background is not None:  # after the stream, as for any response
                await deferred.background()
