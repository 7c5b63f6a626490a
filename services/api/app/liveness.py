"""Liveness: ``GET /healthz`` answered before anything else runs.

The container healthcheck (Docker, hence compose's ``depends_on`` and Swarm,
which replaces an unhealthy task) and Kubernetes' liveness probe ask one
question: does this process still turn its event loop? A process holding
thousands of streams is busy, not dead, and a restart would end every one of
them. So the answer costs as little as the loop allows: this pure ASGI
middleware sits outside CORS, the request id, the access log and FastAPI's
routing (only Starlette's ServerErrorMiddleware, a ``try`` block, is further
out), checks no dependency (Valkey's outage is answered by the API itself,
and would otherwise fail every replica at once), and writes no log line.
It carries no ``X-Request-ID`` or ``X-Served-By``: nothing it does needs
tracing. Other methods fall through to routing, where ``/healthz`` has no
route (404).

Whether the process takes new streams is readiness, ``GET /readyz``
(app/routes/health.py).
"""

from starlette.types import ASGIApp, Receive, Scope, Send

PATH = "/healthz"
BODY = b'{"status":"ok"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


class LivenessMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else BODY})
