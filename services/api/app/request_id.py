"""Request ids: take the proxy's ``X-Request-ID`` or make one, and return it,
with ``X-Served-By``, the process that answered (app.reply_store.process_id):
which replica served a request is the first question of any incident.

A pure ASGI middleware, not ``BaseHTTPMiddleware``: the latter runs the
endpoint in a separate task and has broken streaming responses and client
disconnect detection in the past (starlette #1012, #1438).
"""

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.reply_store import process_id

HEADER = "x-request-id"
_VALID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(HEADER.encode(), b"").decode("latin-1")
        request_id = incoming if _VALID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        if scope["type"] == "websocket":  # for the logs; a handshake answer carries no id
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[HEADER] = request_id
                headers["x-served-by"] = process_id()
            await send(message)

        await self.app(scope, receive, send_with_id)
