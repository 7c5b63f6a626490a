"""Run a stream after the framework's request handling has returned.

A response runs inside every layer that handled its request: Starlette's
exception middleware, the router, FastAPI's route with its exit stacks, the
parsed body and the solved dependencies. For an ordinary response that is
microseconds. A stream lives for minutes, and those frames and objects live
with it: about 12 KB of each held stream's memory, measured with
tracemalloc (bench/stream_memory.py; README, "Performance").

So the streaming route returns :class:`Deferred`, which sends nothing and
leaves the real response on the request's scope; FastAPI and Starlette
return as for any other request, and :class:`StreamHandoff`, the innermost
middleware, then runs the stream with the same ``receive`` and ``send``
(still wrapped by the outer middleware: CORS, request id, access log).
Everything before the first stream byte is unchanged: validation, the token,
the JSON errors of :mod:`app.errors`.
"""

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

_KEY = "deferred_stream"


class Deferred(Response):
    """What the route returns: ``stream`` runs once the request handling returned."""

    def __init__(self, stream: Response) -> None:
        self.stream = stream
        self.background = None  # FastAPI may attach background tasks; a stream has none

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})[_KEY] = self.stream


class StreamHandoff:
    """Runs the stream a :class:`Deferred` left. Add it first (innermost)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        stream = scope.get("state", {}).pop(_KEY, None)
        if stream is not None:
            # FastAPI keeps its request's exit stacks (closed by now) on the
            # scope, which outlives this call: about 2 KB a stream.
            for key in [key for key in scope if key.startswith("fastapi_")]:
                del scope[key]
            await stream(scope, receive, send)
