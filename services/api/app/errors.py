"""Exception handlers: every error leaves the API as one JSON shape.

``{"error": {"code": ..., "message": ..., "details": [...]}}`` (see
:class:`app.schemas.ErrorBody`). Validation details never echo the input:
a rejected message may be large or sensitive.

An exception no handler expects is a 500 ``internal_error`` whose body says
nothing of it, answered by :class:`UnexpectedErrors`, the innermost
middleware. Starlette would answer it from its outermost one, outside CORS
and the request id: a cross-origin page could not read that 500, and it would
carry no ``X-Request-ID``. The middleware logs the traceback with the request
id, and the connection stays open (uvicorn closes one after an exception).
Once a response has started, a second start would break it: the exception
goes on to the server, which logs it and closes the connection.

A chat stream runs outside this middleware (app.handoff), so that it holds
none of its frames for minutes. Its failures are its own: the reply ends with
an ``error`` event (app.reply_store). The handler for ``Exception`` in
:func:`install`, Starlette's outermost, stays for what fails outside
:class:`UnexpectedErrors` before a response starts: the other middleware, or
a stream before its first byte. That 500 has no CORS headers and no request id.
Starlette's handler skips WebSockets: the chat WebSocket's route answers a
handshake that fails with the same 500, as JSON (app/routes/chat_ws.py).
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import access_log
from app.schemas import error_body

logger = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status_code: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers

    def response(self) -> JSONResponse:
        """The refusal as sent: its status, the JSON error body, its headers."""
        return JSONResponse(error_body(self.code, self.message), status_code=self.status_code, headers=self.headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    access_log.note(error=exc.code)
    return exc.response()


def _unparseable_body(exc: HTTPException) -> bool:
    """FastAPI's 400 for a body json.loads could not read other than by a
    JSONDecodeError: nested past the recursion limit (RecursionError) or not
    UTF-8 (UnicodeDecodeError). To the client it is invalid JSON all the same."""
    return exc.status_code == 400 and isinstance(exc.__cause__, RecursionError | ValueError)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if _unparseable_body(exc):
        return JSONResponse(error_body("invalid_json", "The request body is not valid JSON."), status_code=400)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    access_log.note(error=code)
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: list[Any] = list(exc.errors())
    if any(error["type"] == "json_invalid" for error in errors):
        access_log.note(error="invalid_json")
        return JSONResponse(error_body("invalid_json", "The request body is not valid JSON."), status_code=400)
    details = [{"loc": list(error["loc"]), "type": error["type"], "msg": error["msg"]} for error in errors]
    access_log.note(error="validation_error")
    summary = "; ".join(f"{'.'.join(map(str, d['loc'][1:])) or 'body'}: {d['msg']}" for d in details)
    return JSONResponse(error_body("validation_error", summary, details), status_code=422)


def internal_error() -> ApiError:
    """The refusal for an exception no handler expects: it says nothing of it."""
    return ApiError(500, "internal_error", "The server failed to answer. Retry shortly.")


def log_unexpected(scope: Scope) -> None:
    """Log the exception being handled, with its traceback and request id."""
    method = scope["method"] if scope["type"] == "http" else "WS"
    request_id = scope.get("state", {}).get("request_id")
    logger.exception("unexpected error answering %s %s rid=%s", method, scope["path"], request_id)


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    return internal_error().response()


class UnexpectedErrors:
    """The JSON 500 for an exception no handler expects. Add it first (innermost)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True  # before the send: a start that failed was still tried
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                raise
            log_unexpected(scope)
            access_log.note(error="internal_error")
            await internal_error().response()(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
