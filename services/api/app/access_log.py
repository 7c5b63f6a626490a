"""One access line per request, written when the response is over.

uvicorn's own access line (``172.21.0.1:0 - "POST ... HTTP/1.1" 200``) has no
request id, no duration and, for a stream, nothing on how it ended. This
pure ASGI middleware writes instead, on logger ``app.access``:

    POST /api/chat/message/stream 200 2412ms client=203.0.113.7 rid=4f2c... outcome=end tokens=48

The path never carries its query string (tokens must not reach logs, wherever
a client puts them). A stream adds its outcome and the tokens it sent, which
:mod:`app.streaming` records on :data:`RECORD`; a refused request adds its
error code. Probes and scrapes that succeed are not logged (a readiness
probe alone would be a line every five seconds); a 503 from ``/readyz``
(shutting down, at capacity) is. Liveness (``/healthz``) never reaches this
middleware: app/liveness.py answers it first. With ``CHAT_LOG_FORMAT=json``
each line is a JSON object (gunicorn.conf.py).
"""

import logging
import time
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("app.access")

# What the handling of the current request adds to its line (outcome, tokens, error).
RECORD: ContextVar[dict[str, Any] | None] = ContextVar("access_record", default=None)

QUIET_PATHS = {"/readyz", "/metrics"}
# Key of the request's arrival (a perf_counter() reading) in the scope's state.
ARRIVED_AT = "arrived_at"


def note(**fields: Any) -> None:
    """Add fields to the current request's access line (no-op outside a request)."""
    record = RECORD.get()
    if record is not None:
        record.update(fields)


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # The request's arrival, for the stream metrics (app.streaming.arrival):
        # time to first token counts from the same instant as this line's duration.
        scope.setdefault("state", {})[ARRIVED_AT] = started
        record: dict[str, Any] = {"status": None}
        token = RECORD.set(record)

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
            elif message["type"] == "websocket.accept":
                record["status"] = 101
            elif message["type"] == "websocket.http.response.start":  # a refused handshake's answer
                record["status"] = message["status"]
            elif message["type"] == "websocket.close" and record["status"] is None:
                record["status"] = 403  # refused before the handshake completed
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except Exception:
            # An exception no inner layer answered (app/errors.py): Starlette's
            # outermost middleware sends its 500 after this line is written.
            # Say here what the client gets.
            if record["status"] is None and scope["type"] == "http":
                record.update(status=500, error="internal_error")
            raise
        finally:
            RECORD.reset(token)
            self._write(scope, record, time.perf_counter() - started)

    @staticmethod
    def _write(scope: Scope, record: dict[str, Any], seconds: float) -> None:
        path = scope.get("path", "")
        if path in QUIET_PATHS and record["status"] == 200:
            return
        method = scope.get("method", "WS") if scope["type"] == "http" else "WS"
        fields = {
            "method": method,
            "path": path,
            "status": record.pop("status"),
            "duration_ms": round(seconds * 1000),
            "request_id": scope.get("state", {}).get("request_id"),
            "client": (scope.get("client") or ("-",))[0],
            **record,
        }
        extra = " ".join(f"{key}={value}" for key, value in record.items())
        logger.info(
            "%s %s %s %dms client=%s rid=%s%s",
            method,
            path,
            fields["status"],
            fields["duration_ms"],
            fields["client"],
            fields["request_id"],
            f" {extra}" if extra else "",
            extra={"access": fields},
        )
